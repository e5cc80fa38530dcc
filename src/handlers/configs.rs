//! Config changes: IncrementalAlterConfigs and AlterConfigs, for topics.
//!
//! Checked as Kafka's `ConfigAdminManager.preprocess` checks them, resource by resource
//! (each answered on its own, in request order): a resource named twice refuses both, a
//! config named twice or set to null refuses its resource, then the change is computed
//! from the topic's current overrides and every resulting value checked before anything
//! is written. Broker resources ("" for the cluster-wide default, or this broker's id) change
//! the broker's dynamic configs (`broker::dynamic`), refused with INVALID_REQUEST as Kafka
//! refuses them; deleting a config that is not set succeeds and changes nothing.

use std::collections::HashSet;
use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use super::reply::{frame, HandlerError, Reply};
use std::collections::BTreeMap;

use crate::broker::dynamic;
use crate::broker::topic::{ConfigChange, TopicConfig, TopicError};
use crate::broker::Broker;
use crate::handlers::errors::topic_error_code;
use crate::protocol::{decode_body, Request};

/// Resources one request may name.
const RESOURCES_PER_REQUEST_MAX: usize = 1000;
/// Configs one resource of a request may name.
const CONFIGS_PER_RESOURCE_MAX: usize = 1000;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// IncrementalAlterConfigs operations (`AlterConfigOp.OpType`).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Why a resource's change was refused: its error and message.
type Refusal = (ResponseError, String);

/// One resource of either request, reduced to what both share.
struct Wanted {
    resource_type: i8,
    name: String,
    /// The changes, or why they are refused before the resource is looked at.
    changes: Result<Vec<ConfigChange>, Refusal>,
}

impl Wanted {
    /// A resource of either request from its (name, operation, value) entries, at most
    /// `CONFIGS_PER_RESOURCE_MAX` of them (AlterConfigs' are all SET).
    fn new<'a>(
        resource_type: i8,
        name: &StrBytes,
        entries: impl ExactSizeIterator<Item = (&'a str, i8, Option<&'a str>)>,
    ) -> Result<Wanted, HandlerError> {
        super::reply::at_most("configs", entries.len(), CONFIGS_PER_RESOURCE_MAX)?;
        let entries: Vec<(&str, i8, Option<&str>)> = entries.collect();
        Ok(Wanted { resource_type, name: name.to_string(), changes: incremental_changes(&entries) })
    }
}

pub(super) async fn incremental_alter_configs(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: IncrementalAlterConfigsRequest = decode_body(request)?;
    super::reply::at_most("resources", body.resources.len(), RESOURCES_PER_REQUEST_MAX)?;
    let mut wanted = Vec::with_capacity(body.resources.len());
    for resource in &body.resources {
        let entries = resource.configs.iter();
        let entries = entries.map(|c| (c.name.as_str(), c.config_operation, c.value.as_deref()));
        wanted.push(Wanted::new(resource.resource_type, &resource.resource_name, entries)?);
    }
    let mut response = IncrementalAlterConfigsResponse::default();
    for (resource, outcome) in alter(broker, wanted, body.validate_only, false).await {
        response.responses.push(answer(resource, outcome));
    }
    frame(request, &response)
}

pub(super) async fn alter_configs(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: AlterConfigsRequest = decode_body(request)?;
    super::reply::at_most("resources", body.resources.len(), RESOURCES_PER_REQUEST_MAX)?;
    let mut wanted = Vec::with_capacity(body.resources.len());
    for resource in &body.resources {
        let entries = resource.configs.iter();
        let entries = entries.map(|c| (c.name.as_str(), OP_SET, c.value.as_deref()));
        wanted.push(Wanted::new(resource.resource_type, &resource.resource_name, entries)?);
    }
    let mut response = AlterConfigsResponse::default();
    for (resource, outcome) in alter(broker, wanted, body.validate_only, true).await {
        let answered = answer(resource, outcome);
        let mut entry =
            kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse::default(
            );
        entry.error_code = answered.error_code;
        entry.error_message = answered.error_message;
        entry.resource_type = answered.resource_type;
        entry.resource_name = answered.resource_name;
        response.responses.push(entry);
    }
    frame(request, &response)
}

/// The changes of one resource's entries (name, operation, value), or Kafka's refusal of
/// the whole resource: a name given twice, a null value for anything but DELETE, an
/// operation that does not exist.
fn incremental_changes(entries: &[(&str, i8, Option<&str>)]) -> Result<Vec<ConfigChange>, Refusal> {
    let invalid = |message: String| Err((ResponseError::InvalidRequest, message));
    let mut seen = HashSet::new();
    if !entries.iter().all(|(name, _, _)| seen.insert(*name)) {
        return invalid("Error due to duplicate config keys".to_string());
    }
    let nulls: Vec<&str> = entries
        .iter()
        .filter(|(_, op, value)| *op != OP_DELETE && value.is_none())
        .map(|(name, _, _)| *name)
        .collect();
    if !nulls.is_empty() {
        return invalid(format!("Null value not supported for : {}", nulls.join(", ")));
    }
    let mut changes = Vec::with_capacity(entries.len());
    for (name, op, value) in entries {
        let (name, value) = (name.to_string(), value.unwrap_or_default().to_string());
        changes.push(match *op {
            OP_SET => ConfigChange::Set { name, value },
            OP_DELETE => ConfigChange::Delete { name },
            OP_APPEND => ConfigChange::Append { name, value },
            OP_SUBTRACT => ConfigChange::Subtract { name, value },
            other => return invalid(format!("Unknown operation type {other}")),
        });
    }
    Ok(changes)
}

/// Applies (or with `validate_only` checks) each resource's changes; `replace` (AlterConfigs)
/// makes the given configs the topic's whole set of overrides. Outcomes in request order.
async fn alter(
    broker: &Broker,
    wanted: Vec<Wanted>,
    validate_only: bool,
    replace: bool,
) -> Vec<(Wanted, Result<(), Refusal>)> {
    let mut counts = std::collections::HashMap::new();
    for w in &wanted {
        *counts.entry((w.resource_type, w.name.clone())).or_insert(0usize) += 1;
    }
    let mut outcomes = Vec::with_capacity(wanted.len());
    for w in wanted {
        let outcome = if counts[&(w.resource_type, w.name.clone())] > 1 {
            Err((ResponseError::InvalidRequest, "Each resource must appear at most once.".into()))
        } else {
            match &w.changes {
                Err(refusal) => Err(refusal.clone()),
                Ok(changes) => {
                    alter_resource(
                        broker,
                        w.resource_type,
                        &w.name,
                        changes,
                        validate_only,
                        replace,
                    )
                    .await
                }
            }
        };
        match &outcome {
            Ok(()) if !validate_only => {
                info!(resource_type = w.resource_type, name = %w.name, "configs altered")
            }
            Ok(()) => {}
            Err((code, message)) => {
                warn!(resource_type = w.resource_type, name = %w.name, ?code, %message, "config change refused")
            }
        }
        outcomes.push((w, outcome));
    }
    outcomes
}

async fn alter_resource(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    changes: &[ConfigChange],
    validate_only: bool,
    replace: bool,
) -> Result<(), Refusal> {
    match resource_type {
        RESOURCE_TOPIC => {
            let change = |current: &TopicConfig| {
                let base = if replace { TopicConfig::default() } else { current.clone() };
                base.altered(changes)
            };
            broker
                .alter_topic_config(name, change, validate_only)
                .await
                .map_err(|e| (topic_error_code(&e), e.to_string()))
        }
        RESOURCE_BROKER => {
            let resource = broker_resource(broker, name)?;
            // A list's edits are refused before anything is read, as Kafka refuses them.
            for change in changes {
                if let ConfigChange::Append { name, .. } | ConfigChange::Subtract { name, .. } =
                    change
                {
                    if !dynamic::is_list(name) {
                        let what = if matches!(change, ConfigChange::Append { .. }) {
                            "append"
                        } else {
                            "subtract"
                        };
                        return Err((
                            ResponseError::InvalidConfig,
                            format!("Config value {what} is not allowed for config key: {name}"),
                        ));
                    }
                }
            }
            let change =
                |current: &BTreeMap<String, String>| dynamic::altered(current, changes, replace);
            broker.alter_broker_configs(resource, change, validate_only).await.map_err(|e| {
                match e {
                    // Kafka answers a broker config it refuses with INVALID_REQUEST.
                    TopicError::InvalidConfig { reason } => (ResponseError::InvalidRequest, reason),
                    other => (topic_error_code(&other), other.to_string()),
                }
            })
        }
        other => Err((ResponseError::InvalidRequest, format!("Unknown resource type {other}"))),
    }
}

/// The broker resource a request names, as Kafka reads the name: "" for the cluster-wide
/// default (`None`), else this broker's id.
fn broker_resource(broker: &Broker, name: &str) -> Result<Option<i32>, Refusal> {
    if name.is_empty() {
        return Ok(None);
    }
    let me = broker.config.broker_id;
    match name.parse::<i32>() {
        Err(_) => Err((
            ResponseError::InvalidRequest,
            format!("Node id must be an integer, but it is: {name}"),
        )),
        Ok(id) if id != me => Err((
            ResponseError::InvalidRequest,
            format!("Unexpected broker id, expected {me}, but received {name}"),
        )),
        Ok(id) => Ok(Some(id)),
    }
}

/// A resource's answer; Kafka sends a null message when there is no error.
fn answer(resource: Wanted, outcome: Result<(), Refusal>) -> AlterConfigsResourceResponse {
    let mut entry = AlterConfigsResourceResponse::default();
    entry.resource_type = resource.resource_type;
    entry.resource_name = StrBytes::from_string(resource.name);
    entry.error_message = None;
    if let Err((code, message)) = outcome {
        entry.error_code = code.code();
        entry.error_message = Some(StrBytes::from_string(message));
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_is_refused_whole_for_a_repeated_name_a_null_value_or_an_unknown_operation() {
        let refused = |entries: &[(&str, i8, Option<&str>)]| {
            incremental_changes(entries).expect_err("refused").1
        };
        assert_eq!(
            refused(&[("retention.ms", OP_SET, Some("1")), ("retention.ms", OP_DELETE, None)]),
            "Error due to duplicate config keys"
        );
        assert_eq!(
            refused(&[("retention.ms", OP_SET, None), ("segment.ms", OP_APPEND, None)]),
            "Null value not supported for : retention.ms, segment.ms"
        );
        assert_eq!(refused(&[("retention.ms", 9, Some("1"))]), "Unknown operation type 9");
        let changes =
            incremental_changes(&[("retention.ms", OP_DELETE, None)]).expect("a null DELETE");
        assert_eq!(changes, vec![ConfigChange::Delete { name: "retention.ms".into() }]);
    }
}
