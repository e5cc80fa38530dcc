//! The bench's topic: created with `--partitions` if it does not exist, then waited for
//! until every partition has a leader that takes requests, which a new topic may not have
//! at once (Kafka lists a leader before it serves).

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use kafka_protocol::ResponseError;

use super::args::LoadArgs;
use crate::cli::client::{list_offsets_by_leader, Client};
use crate::cli::error::{error_name, CliError};

/// How long the bench waits for a topic's partitions to have leaders that take requests.
const TOPIC_READY_MS_MAX: u64 = 30_000;
/// Pause between those checks.
const TOPIC_READY_RETRY_MS: u64 = 100;

/// Partition -> leader of the bench's topic, created if need be, once every leader answers.
pub(super) fn ensure_topic(
    client: &mut Client,
    load: &LoadArgs,
) -> Result<BTreeMap<i32, i32>, CliError> {
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(load.topic.clone().into());
    topic.num_partitions = load.partitions;
    topic.replication_factor = -1;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 30_000;
    let response = client.send(-1, &request)?;
    if let Some(result) = response.topics.first() {
        if result.error_code != 0 && result.error_code != ResponseError::TopicAlreadyExists.code() {
            return Err(CliError::failure(format!(
                "cannot create topic {}: {}",
                load.topic,
                error_name(result.error_code)
            )));
        }
    }
    // A new topic may be listed before its partitions have leaders, and a leader may be
    // listed before it takes requests (Kafka): wait until every leader answers ListOffsets.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(TOPIC_READY_MS_MAX);
    loop {
        let failure = match topic_leaders(client, &load.topic) {
            Ok(leaders) => match list_offsets_by_leader(
                client,
                &load.topic,
                leaders.iter().map(|(p, l)| (*p, *l)),
                -1,
            ) {
                Ok(_) => return Ok(leaders),
                Err(error) => error,
            },
            Err(error) => error,
        };
        if std::time::Instant::now() >= deadline {
            return Err(failure);
        }
        std::thread::sleep(std::time::Duration::from_millis(TOPIC_READY_RETRY_MS));
    }
}

/// Partition -> leader of `topic`, once every partition has one.
fn topic_leaders(client: &mut Client, topic_name: &str) -> Result<BTreeMap<i32, i32>, CliError> {
    let metadata = client.metadata(Some(&[topic_name.to_string()]), false)?;
    let topic =
        metadata.topics.first().ok_or_else(|| CliError::failure("empty Metadata response"))?;
    if topic.error_code != 0 {
        return Err(CliError::failure(format!(
            "topic {topic_name}: {}",
            error_name(topic.error_code)
        )));
    }
    if topic.partitions.is_empty() || topic.partitions.iter().any(|p| p.leader_id.0 < 0) {
        return Err(CliError::failure(format!(
            "topic {topic_name} has partitions without a leader yet"
        )));
    }
    Ok(topic.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect())
}
