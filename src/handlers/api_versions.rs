//! ApiVersions: the versions Fjord serves. An unsupported request version gets Kafka's
//! answer (KIP-511): error UNSUPPORTED_VERSION in a v0 response that lists the versions of
//! ApiVersions alone, so the client can retry with one it shares.

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::reply::Reply;
use crate::protocol::{
    advertised_max, decode_body, encode_response, Request, SUPPORTED_APIS, TRANSACTION_VERSION_MAX,
};

/// The feature Fjord finalizes (KIP-584): the transaction protocol (KIP-890 part 2).
const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
/// The epoch of Fjord's finalized features: they change only with a restart.
const FINALIZED_FEATURES_EPOCH: i64 = 1;

/// Kafka's pattern for the client software name and version of ApiVersions v3+
/// (`ApiVersionsRequest.SOFTWARE_NAME_VERSION_PATTERN`): `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_software_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    let edge = |b: &u8| b.is_ascii_alphanumeric();
    let inner = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.';
    match bytes {
        [] => false,
        [only] => edge(only),
        [first, middle @ .., last] => edge(first) && edge(last) && middle.iter().all(inner),
    }
}

/// Answers ApiVersions; `transaction_version` is the finalized `transaction.version`.
pub(super) fn handle(request: &Request, transaction_version: i16) -> Reply {
    // v4 has v3's format (it only lets a supported feature's min version be 0, KAFKA-17011).
    let (min, max) =
        crate::protocol::supported_versions(ApiKey::ApiVersions).expect("ApiVersions is served");
    let mut response = ApiVersionsResponse::default();
    // KAFKA-17011: a v3 client refuses a supported feature whose lowest version is 0.
    let lowest = if request.version >= 4 { 0 } else { 1 };
    let mut supported = SupportedFeatureKey::default();
    supported.name = TRANSACTION_VERSION_FEATURE.into();
    supported.min_version = lowest;
    supported.max_version = TRANSACTION_VERSION_MAX;
    response.supported_features = vec![supported];
    response.finalized_features_epoch = FINALIZED_FEATURES_EPOCH;
    if transaction_version > 0 {
        // A feature at level 0 is not listed as finalized, as Kafka answers.
        let mut finalized = FinalizedFeatureKey::default();
        finalized.name = TRANSACTION_VERSION_FEATURE.into();
        finalized.min_version_level = transaction_version;
        finalized.max_version_level = transaction_version;
        response.finalized_features = vec![finalized];
    }
    response.api_keys = SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            let mut version = ApiVersion::default();
            version.api_key = *key as i16;
            // librdkafka before 2.10 compresses gzip, snappy and lz4 only if the broker
            // advertises Produce v0 (librdkafka #4956); Kafka 4 advertises v0 for the same
            // reason (KAFKA-18659) and refuses v0-2 requests, as Fjord does in `dispatch`.
            version.min_version = if *key == ApiKey::Produce { 0 } else { *min };
            version.max_version = advertised_max(*key, *max, transaction_version);
            version
        })
        .collect();
    let supported = (min..=max).contains(&request.version);
    if supported && request.version >= 3 {
        // Kafka answers a v3+ request whose client software name or version does not match
        // its pattern with INVALID_REQUEST and no API list; a body it cannot read closes.
        let body: ApiVersionsRequest = match decode_body(request) {
            Ok(body) => body,
            Err(error) => {
                return Reply::Close(format!("ApiVersions v{}: {error:#}", request.version))
            }
        };
        if !valid_software_text(&body.client_software_name)
            || !valid_software_text(&body.client_software_version)
        {
            tracing::info!(
                name = %body.client_software_name.as_str(),
                version = %body.client_software_version.as_str(),
                "ApiVersions with an invalid client software name or version"
            );
            response.error_code = ResponseError::InvalidRequest.code();
            response.api_keys.clear();
        }
    }
    let version = if !supported {
        // Newer clients start with their newest version and retry with ours: routine, not news.
        tracing::debug!(
            version = request.version,
            "ApiVersions version not supported; answering with v0"
        );
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

#[cfg(test)]
mod tests {
    use super::valid_software_text;

    #[test]
    fn software_names_follow_kafkas_pattern() {
        for good in [
            "a",
            "librdkafka",
            "confluent-kafka-python",
            "2.16.1-rdkafka-2.16.0",
            "apache-kafka-java",
            "4.4.0",
        ] {
            assert!(valid_software_text(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a b", ".", "kafka_python", "x."] {
            assert!(!valid_software_text(bad), "{bad}");
        }
    }
}
