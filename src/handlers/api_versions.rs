//! ApiVersions: the versions Fjord serves. An unsupported request version gets Kafka's
//! answer (KIP-511): error UNSUPPORTED_VERSION in a v0 response that lists the versions of
//! ApiVersions alone, so the client can retry with one it shares.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::Reply;
use crate::protocol::{encode_response, Request, SUPPORTED_APIS};

pub fn handle(request: &Request) -> Reply {
    let (min, max) = (0, 3);
    let mut response = ApiVersionsResponse::default();
    response.finalized_features_epoch = -1;
    response.api_keys = SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            let mut version = ApiVersion::default();
            version.api_key = *key as i16;
            // librdkafka before 2.10 compresses gzip, snappy and lz4 only if the broker
            // advertises Produce v0 (librdkafka #4956); Kafka 4 advertises v0 for the same
            // reason (KAFKA-18659) and refuses v0-2 requests, as Fjord does in `dispatch`.
            version.min_version = if *key == ApiKey::Produce { 0 } else { *min };
            version.max_version = *max;
            version
        })
        .collect();
    let version = if request.version < min || request.version > max {
        tracing::info!(version = request.version, "ApiVersions version not supported; answering with v0");
        response.error_code = ResponseError::UnsupportedVersion.code();
        response.api_keys.retain(|k| k.api_key == ApiKey::ApiVersions as i16);
        0
    } else {
        request.version
    };
    match encode_response(ApiKey::ApiVersions, version, request.header.correlation_id, &response) {
        Ok(frame) => Reply::Frame(frame),
        Err(error) => Reply::Close(format!("cannot encode ApiVersions: {error}")),
    }
}
