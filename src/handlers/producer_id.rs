//! InitProducerId: a fresh producer id (epoch 0) for an idempotent producer; a
//! transactional producer's id and epoch come from the transaction coordinator
//! (`txn.rs`).

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::reply::{frame, HandlerError, Reply};
use crate::broker::Broker;
use crate::protocol::{decode_body, Request};

pub(super) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: InitProducerIdRequest = decode_body(request)?;
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if body.transactional_id.as_ref().is_some_and(|id| id.is_empty()) {
        // As Kafka: only null means an idempotent producer without transactions.
        tracing::warn!("InitProducerId with an empty transactional id refused");
        response.error_code = ResponseError::InvalidRequest.code();
        return frame(request, &response);
    }
    if let Some(transactional_id) = &body.transactional_id {
        match super::txn::init_producer_id(broker, request, &body, &transactional_id.0).await {
            Ok((id, epoch)) => {
                response.producer_id = ProducerId(id);
                response.producer_epoch = epoch;
            }
            Err(error) => {
                tracing::info!(transactional_id = %transactional_id.0, ?error, "InitProducerId refused");
                response.error_code = error.code();
            }
        }
        return frame(request, &response);
    }
    match broker.allocate_producer_id().await {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot allocate a producer id");
            response.error_code = ResponseError::KafkaStorageError.code();
        }
    }
    frame(request, &response)
}
