//! DescribeCluster (API 60): the brokers, the controller and the cluster id, as Kafka's
//! `KafkaApis.handleDescribeCluster` and `AuthHelper.computeDescribeClusterResponse` answer
//! them on a broker endpoint.
//!
//! The brokers are those Metadata lists (`brokers.rs`); from v2 a client may ask for the
//! fenced ones too, which here are the brokers of the cluster file that are down (Kafka
//! fences a broker whose session expired or that shut down; it stays registered). The
//! controller is named only if it is among the brokers listed (else -1, as Kafka answers a
//! controller it has no address for). From v1 a request for another endpoint type is refused
//! with Kafka's codes: MISMATCHED_ENDPOINT_TYPE for the controllers' endpoint and
//! UNSUPPORTED_ENDPOINT_TYPE for an unknown one (v0 has no such field: it asks for brokers).

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;
use tracing::warn;

use super::reply::{frame, HandlerError, Reply};
use super::{authorized, brokers};
use crate::broker::Broker;
use crate::protocol::{decode_body, Request};

/// Kafka's `EndpointType` ids.
const ENDPOINT_BROKER: i8 = 1;
const ENDPOINT_CONTROLLER: i8 = 2;
/// The first version with `endpoint_type` in the request and the answer.
const ENDPOINT_TYPE_FROM_VERSION: i16 = 1;
/// The first version with `include_fenced_brokers` and `is_fenced`.
const FENCED_FROM_VERSION: i16 = 2;

pub(super) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: DescribeClusterRequest = decode_body(request)?;
    let mut response = DescribeClusterResponse::default();
    let asked = if request.version >= ENDPOINT_TYPE_FROM_VERSION {
        body.endpoint_type
    } else {
        ENDPOINT_BROKER
    };
    if let Some((error, message)) = endpoint_refusal(asked) {
        warn!(endpoint_type = asked, version = request.version, %message, "DescribeCluster refused");
        response.error_code = error.code();
        response.error_message = Some(message.into());
        return frame(request, &response);
    }
    // Matches Metadata's answer, whose cluster id is Fjord's name.
    response.cluster_id = "fjord".into();
    response.cluster_authorized_operations =
        authorized::if_asked(body.include_cluster_authorized_operations, authorized::CLUSTER);
    let with_fenced = request.version >= FENCED_FROM_VERSION && body.include_fenced_brokers;
    response.brokers = brokers::all_brokers(broker)
        .into_iter()
        .filter(|b| b.alive || with_fenced)
        .map(|b| {
            let mut node = DescribeClusterBroker::default();
            node.broker_id = BrokerId(b.id);
            node.host = b.host.into();
            node.port = b.port;
            node.rack = None;
            if request.version >= FENCED_FROM_VERSION {
                node.is_fenced = !b.alive;
            }
            node
        })
        .collect();
    let controller = brokers::controller_id(broker);
    let listed = response.brokers.iter().any(|b| b.broker_id.0 == controller);
    response.controller_id = BrokerId(if listed { controller } else { -1 });
    frame(request, &response)
}

/// Why a request for endpoint type `asked` is refused on a broker endpoint.
fn endpoint_refusal(asked: i8) -> Option<(ResponseError, String)> {
    match asked {
        ENDPOINT_BROKER => None,
        ENDPOINT_CONTROLLER => Some((
            ResponseError::MismatchedEndpointType,
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of \
             type CONTROLLER"
                .to_string(),
        )),
        other => Some((
            ResponseError::UnsupportedEndpointType,
            format!("Unsupported endpoint type {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_broker_endpoint_is_served() {
        assert!(endpoint_refusal(ENDPOINT_BROKER).is_none());
        let code = |asked| endpoint_refusal(asked).map(|(e, _)| e);
        assert_eq!(code(ENDPOINT_CONTROLLER), Some(ResponseError::MismatchedEndpointType));
        assert_eq!(code(0), Some(ResponseError::UnsupportedEndpointType));
        assert_eq!(code(7), Some(ResponseError::UnsupportedEndpointType));
    }
}
