//! InitProducerId: a fresh producer id (epoch 0) for an idempotent producer. Transactional
//! producers are refused: Fjord has no transaction coordinator.

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
    if body.transactional_id.is_some() {
        tracing::warn!(transactional_id = ?body.transactional_id, "InitProducerId for a transactional producer refused: transactions are not supported");
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
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
