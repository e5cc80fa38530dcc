//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions.

use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse,
};
use kafka_protocol::ResponseError;
use tracing::{info, warn};
use uuid::Uuid;

use super::describe_configs::topic_entries;
use super::reply::{frame, HandlerError, Reply};
use crate::broker::topic::TopicConfig;
use crate::broker::{Broker, Topic};
use crate::handlers::errors::topic_error_code;
use crate::protocol::{decode_body, Request};

/// Topics one CreateTopics or DeleteTopics request may name.
const ADMIN_TOPICS_PER_REQUEST_MAX: usize = 1000;

pub(super) async fn create_topics(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: CreateTopicsRequest = decode_body(request)?;
    super::reply::at_most("topics", body.topics.len(), ADMIN_TOPICS_PER_REQUEST_MAX)?;
    let mut response = CreateTopicsResponse::default();
    for wanted in &body.topics {
        let result = create_topic(broker, wanted, body.validate_only, request.version).await;
        response.topics.push(result);
    }
    frame(request, &response)
}

/// Creates (or, with `validate_only`, checks) one topic of a CreateTopics request.
async fn create_topic(
    broker: &Rc<Broker>,
    wanted: &CreatableTopic,
    validate_only: bool,
    version: i16,
) -> CreatableTopicResult {
    let name = wanted.name.0.to_string();
    let mut result = CreatableTopicResult::default();
    result.name = wanted.name.clone();
    result.num_partitions = -1;
    result.replication_factor = -1;
    // The codec's default is an empty message; Kafka sends null unless there is an error.
    result.error_message = None;
    let partitions = if !wanted.assignments.is_empty() {
        wanted.assignments.len() as i32
    } else if wanted.num_partitions == -1 {
        broker.config.num_partitions
    } else {
        wanted.num_partitions
    };
    let replication = wanted.replication_factor;
    let outcome = match checked_config(broker, wanted) {
        Err(refusal) => Err(refusal),
        Ok(config) => broker
            .create_topic(&name, partitions, replication, config, validate_only)
            .await
            .map_err(|e| (topic_error_code(&e), e.to_string())),
    };
    let topic = match outcome {
        Ok(topic) => topic,
        Err((code, message)) => {
            warn!(topic = %name, %message, "CreateTopics refused");
            result.error_code = code.code();
            result.error_message = Some(message.into());
            return result;
        }
    };
    // v7+ (the codec leaves it out before); Kafka also gives a validate-only creation the
    // id it would have had.
    result.topic_id = Uuid::from_bytes(topic.id);
    if version >= 5 {
        result.num_partitions = partitions;
        result.replication_factor = created_replication_factor(broker, &name, replication);
        result.configs = Some(created_configs(broker, &topic));
    }
    result
}

/// The configs a CreateTopics entry asks for, and a replica assignment that names only this
/// broker; or the refusal to answer.
fn checked_config(
    broker: &Broker,
    wanted: &CreatableTopic,
) -> Result<TopicConfig, (ResponseError, String)> {
    let config = TopicConfig::from_pairs(
        wanted.configs.iter().filter_map(|c| Some((c.name.as_str(), c.value.as_ref()?.as_str()))),
    )
    .map_err(|message| (ResponseError::InvalidConfig, message))?;
    let me = broker.config.broker_id;
    if wanted.assignments.iter().any(|a| a.broker_ids.iter().any(|b| b.0 != me)) {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            format!("replica assignment names brokers other than {me}"),
        ));
    }
    Ok(config)
}

/// The replication factor a created topic got: from the cluster state, 1 on a single
/// broker (`asked` if the state does not hold the topic, as for a validate-only creation).
fn created_replication_factor(broker: &Broker, name: &str, asked: i16) -> i16 {
    match &broker.cluster {
        Some(cluster) => cluster
            .state
            .borrow()
            .topics
            .get(name)
            .and_then(|t| t.partitions.first())
            .map_or(asked, |p| p.replicas.len() as i16),
        None => 1,
    }
}

/// A created topic's configs, as CreateTopics v5+ answers them.
fn created_configs(broker: &Broker, topic: &Topic) -> Vec<CreatableTopicConfigs> {
    topic_entries(broker, topic)
        .into_iter()
        .map(|entry| {
            let mut c = CreatableTopicConfigs::default();
            c.name = entry.name.into();
            c.value = Some(entry.value.into());
            c.config_source = entry.source;
            c
        })
        .collect()
}

pub(super) async fn delete_topics(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: DeleteTopicsRequest = decode_body(request)?;
    let named = body.topic_names.len() + body.topics.len();
    super::reply::at_most("topics", named, ADMIN_TOPICS_PER_REQUEST_MAX)?;
    let deletions = resolve_deletions(broker, &body);
    let mut response = DeleteTopicsResponse::default();
    let answer = |name: Option<String>, id: Uuid, error: Option<(ResponseError, String)>| {
        let mut result = DeletableTopicResult::default();
        result.name = name.map(|n| TopicName(n.into()));
        result.topic_id = id; // v6+ (the codec leaves it out before)
        if let Some((code, message)) = error {
            result.error_code = code.code();
            if request.version >= 5 {
                result.error_message = Some(message.into());
            }
        }
        result
    };
    for (name, id, code, message) in deletions.refused {
        warn!(topic = ?name, %id, %message, "DeleteTopics refused");
        response.responses.push(answer(name, id, Some((code, message))));
    }
    for (name, id) in deletions.topics {
        let outcome = broker
            .delete_topic(&name)
            .await
            .map_err(|error| (topic_error_code(&error), error.to_string()));
        if let Err((_, message)) = &outcome {
            warn!(topic = %name, %message, "DeleteTopics refused");
        }
        response.responses.push(answer(Some(name), id, outcome.err()));
    }
    frame(request, &response)
}

/// The topics of a DeleteTopics request, resolved as Kafka's `ControllerApis.deleteTopics`
/// resolves them.
struct Deletions {
    /// (name, id) of each topic to delete; the id is nil for a name this shard does not
    /// know, whose deletion then says why.
    topics: Vec<(String, Uuid)>,
    /// Entries answered without deleting anything: (name, id, error, message).
    refused: Vec<(Option<String>, Uuid, ResponseError, String)>,
}

/// Topics by name (`topic_names` before v6, `topics` with a name from v6) or by id (v6),
/// never both in one entry. A name or id given twice is refused once and deletes nothing,
/// and so is a name whose topic was also named by its id; an id no topic has is
/// UNKNOWN_TOPIC_ID.
fn resolve_deletions(broker: &Broker, body: &DeleteTopicsRequest) -> Deletions {
    let invalid = ResponseError::InvalidRequest;
    let mut refused = Vec::new();
    let mut names: Vec<String> = body.topic_names.iter().map(|n| n.0.to_string()).collect();
    let mut ids = Vec::new();
    for entry in &body.topics {
        match (&entry.name, entry.topic_id.is_nil()) {
            (None, true) => refused.push((
                None,
                Uuid::nil(),
                invalid,
                "Neither topic name nor id were specified.".to_string(),
            )),
            (None, false) => ids.push(entry.topic_id),
            (Some(name), true) => names.push(name.0.to_string()),
            (Some(name), false) => refused.push((
                Some(name.0.to_string()),
                entry.topic_id,
                invalid,
                "You may not specify both topic name and topic id.".to_string(),
            )),
        }
    }
    let (names, repeated_names) = once_each(names);
    let (ids, mut repeated_ids) = once_each(ids);
    refused.extend(
        repeated_names
            .into_iter()
            .map(|name| (Some(name), Uuid::nil(), invalid, "Duplicate topic name.".to_string())),
    );
    refused.extend(
        repeated_ids.iter().map(|id| (None, *id, invalid, "Duplicate topic id.".to_string())),
    );
    let known: HashMap<Uuid, String> =
        broker.topics().iter().map(|t| (Uuid::from_bytes(t.id), t.name.to_string())).collect();
    let mut topics: Vec<(String, Uuid)> = Vec::with_capacity(ids.len() + names.len());
    for id in ids {
        match known.get(&id) {
            Some(name) => topics.push((name.clone(), id)),
            None => refused.push((
                None,
                id,
                ResponseError::UnknownTopicId,
                format!("no topic has id {id}"),
            )),
        }
    }
    for name in names {
        let id = broker.topic(&name).map_or(Uuid::nil(), |t| Uuid::from_bytes(t.id));
        let named_by_id = !id.is_nil()
            && (repeated_ids.contains(&id) || topics.iter().any(|(_, known)| *known == id));
        if named_by_id {
            // Kafka refuses the name and deletes the topic under neither.
            topics.retain(|(_, known)| *known != id);
            repeated_ids.push(id);
            refused.push((
                Some(name),
                id,
                invalid,
                "The provided topic name maps to an ID that was already supplied.".to_string(),
            ));
        } else {
            topics.push((name, id));
        }
    }
    Deletions { topics, refused }
}

/// The values given once, in order, and those given more than once (each once).
fn once_each<T: Eq + Hash + Clone>(values: Vec<T>) -> (Vec<T>, Vec<T>) {
    let mut counts: HashMap<T, usize> = HashMap::with_capacity(values.len());
    for value in &values {
        *counts.entry(value.clone()).or_default() += 1;
    }
    let mut once = Vec::with_capacity(values.len());
    let mut repeated = Vec::new();
    for value in values {
        match counts.get_mut(&value) {
            Some(1) => once.push(value),
            // The first of several: reported once, the others skipped.
            Some(count) if *count > 1 => {
                *count = 0;
                repeated.push(value);
            }
            _ => {}
        }
    }
    (once, repeated)
}

/// CreatePartitions: each topic grown on its own, answered in request order; a topic named
/// twice is refused every time, as Kafka's controller does.
pub(super) async fn create_partitions(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: CreatePartitionsRequest = decode_body(request)?;
    super::reply::at_most("topics", body.topics.len(), ADMIN_TOPICS_PER_REQUEST_MAX)?;
    let (_, repeated) = once_each(body.topics.iter().map(|t| t.name.clone()).collect());
    let mut response = CreatePartitionsResponse::default();
    for wanted in &body.topics {
        let name = wanted.name.0.to_string();
        let outcome = if repeated.contains(&wanted.name) {
            Err((ResponseError::InvalidRequest, "Duplicate topic name.".to_string()))
        } else {
            let assignments = wanted.assignments.as_ref().map(|list| {
                list.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect()
            });
            broker
                .create_partitions(&name, wanted.count, assignments, body.validate_only)
                .await
                .map_err(|e| (topic_error_code(&e), e.to_string()))
        };
        let mut result = CreatePartitionsTopicResult::default();
        result.name = wanted.name.clone();
        result.error_message = None;
        match outcome {
            Ok(()) => {
                if !body.validate_only {
                    info!(topic = %name, count = wanted.count, "partitions created");
                }
            }
            Err((code, message)) => {
                warn!(topic = %name, %message, "CreatePartitions refused");
                result.error_code = code.code();
                // Kafka's controller refuses an unknown topic with an exception that has no
                // message, and answers none.
                if code != ResponseError::UnknownTopicOrPartition {
                    result.error_message = Some(message.into());
                }
            }
        }
        response.results.push(result);
    }
    frame(request, &response)
}

#[cfg(test)]
mod tests {
    use super::once_each;

    #[test]
    fn a_value_given_twice_is_reported_once_and_kept_from_the_others() {
        let (once, repeated) = once_each(vec!["a", "b", "a", "c", "a", "b"]);
        assert_eq!(once, vec!["c"]);
        assert_eq!(repeated, vec!["a", "b"]);
        assert_eq!(once_each(Vec::<u8>::new()), (vec![], vec![]));
    }
}
