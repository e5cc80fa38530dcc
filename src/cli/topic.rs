//! `fjord topic create|list|describe|alter|delete-records|reassign|delete`: topic
//! administration over the Kafka protocol.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, DescribeLogDirsRequest, TopicName,
};

use super::client::{list_offsets_by_leader, Client};
use super::config::refused;
use super::error::CliError;
use crate::broker::cleaner::CleanerStatus;

#[derive(Debug, clap::Args)]
pub(super) struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Partitions [default: the broker's num-partitions].
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replicas per partition [default: the broker's default].
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// A topic config, NAME=VALUE (e.g. retention.ms=3600000); repeatable.
        #[arg(long = "config", short = 'c', value_name = "NAME=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List {
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Show a topic's partitions, leaders, replicas and offsets.
    Describe {
        name: String,
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Change a topic: add partitions, set or remove configs.
    Alter {
        name: String,
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Grow the topic to this many partitions (never fewer).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Set a topic config, NAME=VALUE; repeatable.
        #[arg(long = "config", short = 'c', value_name = "NAME=VALUE")]
        configs: Vec<String>,
        /// Remove a topic config (back to the broker's default); repeatable.
        #[arg(long = "delete-config", value_name = "NAME")]
        delete_configs: Vec<String>,
    },
    /// Delete a partition's records below an offset (the log start moves there).
    DeleteRecords {
        name: String,
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[arg(long, short = 'p')]
        partition: i32,
        /// The new first offset; -1: the high watermark (delete everything readable).
        #[arg(long, allow_negative_numbers = true)]
        before: i64,
    },
    /// Move a partition's replicas to other brokers (or, with --cancel, stop a move).
    Reassign {
        name: String,
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[arg(long, short = 'p')]
        partition: i32,
        /// The new replicas, the preferred leader first: broker ids, comma-separated.
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
        replicas: Vec<i32>,
        /// Cancel the reassignment in progress instead.
        #[arg(long, conflicts_with = "replicas")]
        cancel: bool,
    },
    /// Delete a topic and its data.
    Delete {
        name: String,
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

use super::error::error_name;

pub(super) fn run(args: TopicArgs) -> Result<(), CliError> {
    match args.command {
        TopicCommand::Create { name, bootstrap, partitions, replication_factor, configs } => {
            create(&name, &bootstrap, partitions, replication_factor, &configs)
        }
        TopicCommand::List { bootstrap } => list(&bootstrap),
        TopicCommand::Describe { name, bootstrap } => describe(&name, &bootstrap),
        TopicCommand::Alter { name, bootstrap, partitions, configs, delete_configs } => {
            alter(&name, &bootstrap, partitions, &configs, &delete_configs)
        }
        TopicCommand::DeleteRecords { name, bootstrap, partition, before } => {
            delete_records(&name, &bootstrap, partition, before)
        }
        TopicCommand::Reassign { name, bootstrap, partition, replicas, cancel } => {
            reassign(&name, &bootstrap, partition, (!cancel).then_some(replicas))
        }
        TopicCommand::Delete { name, bootstrap } => delete(&name, &bootstrap),
    }
}

/// `fjord topic reassign`: AlterPartitionReassignments for one partition (`None`: cancel).
fn reassign(
    name: &str,
    bootstrap: &str,
    partition: i32,
    replicas: Option<Vec<i32>>,
) -> Result<(), CliError> {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, BrokerId};
    let mut client = Client::connect(bootstrap)?;
    let mut wanted = ReassignablePartition::default();
    wanted.partition_index = partition;
    wanted.replicas = replicas.clone().map(|ids| ids.into_iter().map(BrokerId).collect());
    let mut topic = ReassignableTopic::default();
    topic.name = TopicName(name.to_string().into());
    topic.partitions = vec![wanted];
    let mut request = AlterPartitionReassignmentsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 30_000;
    request.allow_replication_factor_change = true;
    let response = client.send(-1, &request)?;
    if response.error_code != 0 {
        let what = format!("cannot reassign {name}-{partition}");
        return Err(refused(&what, response.error_code, response.error_message.as_deref()));
    }
    let result = response
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| CliError::failure("empty AlterPartitionReassignments response"))?;
    if result.error_code != 0 {
        let what = format!("cannot reassign {name}-{partition}");
        return Err(refused(&what, result.error_code, result.error_message.as_deref()));
    }
    match replicas {
        Some(replicas) => println!(
            "moving {name}-{partition} to replicas {replicas:?}; `fjord topic describe {name}` shows when it is done"
        ),
        None => println!("cancelled the reassignment of {name}-{partition}"),
    }
    Ok(())
}

/// A `--config NAME=VALUE` argument, split.
fn config_pair(pair: &str) -> Result<(&str, &str), CliError> {
    pair.split_once('=').ok_or_else(|| {
        CliError::usage(format!("--config {pair:?} is not NAME=VALUE"))
            .with_hint("e.g. --config retention.ms=3600000")
    })
}

/// `fjord topic alter`: CreatePartitions for `--partitions`, then IncrementalAlterConfigs
/// (SET and DELETE) for the configs.
fn alter(
    name: &str,
    bootstrap: &str,
    partitions: Option<i32>,
    configs: &[String],
    delete_configs: &[String],
) -> Result<(), CliError> {
    if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
        return Err(CliError::usage("nothing to alter")
            .with_hint("give --partitions, --config NAME=VALUE or --delete-config NAME"));
    }
    let mut client = Client::connect(bootstrap)?;
    if let Some(count) = partitions {
        let mut topic = CreatePartitionsTopic::default();
        topic.name = TopicName(name.to_string().into());
        topic.count = count;
        topic.assignments = None; // placed by the broker
        let mut request = CreatePartitionsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 30_000;
        let response = client.send(-1, &request)?;
        let result = response
            .results
            .first()
            .ok_or_else(|| CliError::failure("empty CreatePartitions response"))?;
        if result.error_code != 0 {
            let what = format!("cannot grow topic {name} to {count} partitions");
            return Err(refused(&what, result.error_code, result.error_message.as_deref()));
        }
        println!("topic {name} has {count} partitions");
    }
    if configs.is_empty() && delete_configs.is_empty() {
        return Ok(());
    }
    for pair in configs {
        config_pair(pair)?;
    }
    super::config::alter_topic(&mut client, name, configs, delete_configs)?;
    println!("changed the configs of topic {name}");
    Ok(())
}

/// `fjord topic delete-records`: DeleteRecords at the partition's leader.
fn delete_records(
    name: &str,
    bootstrap: &str,
    partition: i32,
    before: i64,
) -> Result<(), CliError> {
    let mut client = Client::connect(bootstrap)?;
    let leaders = client.partition_leaders(name, false, "check the topic name")?;
    let leader = *leaders
        .get(&partition)
        .ok_or_else(|| CliError::failure(format!("topic {name} has no partition {partition}")))?;
    let mut wanted = DeleteRecordsPartition::default();
    wanted.partition_index = partition;
    wanted.offset = before;
    let mut topic = DeleteRecordsTopic::default();
    topic.name = TopicName(name.to_string().into());
    topic.partitions = vec![wanted];
    let mut request = DeleteRecordsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 30_000;
    let response = client.send(leader, &request)?;
    let result = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| CliError::failure("empty DeleteRecords response"))?;
    if result.error_code != 0 {
        let what = format!("cannot delete records of {name}-{partition} before {before}");
        return Err(refused(&what, result.error_code, None));
    }
    println!("{name}-{partition} starts at offset {}", result.low_watermark);
    Ok(())
}

/// `fjord topic create`: partitions and replication factor default to the broker's.
fn create(
    name: &str,
    bootstrap: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &[String],
) -> Result<(), CliError> {
    let mut client = Client::connect(bootstrap)?;
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(name.to_string().into());
    topic.num_partitions = partitions.unwrap_or(-1);
    topic.replication_factor = replication_factor.unwrap_or(-1);
    for pair in configs {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            CliError::usage(format!("--config {pair:?} is not NAME=VALUE"))
                .with_hint("e.g. --config retention.ms=3600000")
        })?;
        let mut config = CreatableTopicConfig::default();
        config.name = key.to_string().into();
        config.value = Some(value.to_string().into());
        topic.configs.push(config);
    }
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 30_000;
    let response = client.send(-1, &request)?;
    let result =
        response.topics.first().ok_or_else(|| CliError::failure("empty CreateTopics response"))?;
    if result.error_code != 0 {
        let message =
            result.error_message.as_ref().map_or(String::new(), |m| format!(": {}", m.as_str()));
        return Err(CliError::failure(format!(
            "cannot create topic {name}: {}{message}",
            error_name(result.error_code)
        )));
    }
    println!("created topic {name}");
    Ok(())
}

/// `fjord topic list`: the topics' names, sorted.
fn list(bootstrap: &str) -> Result<(), CliError> {
    let mut client = Client::connect(bootstrap)?;
    let metadata = client.metadata(None, false)?;
    let mut names: Vec<String> =
        metadata.topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect();
    names.sort();
    for name in names {
        println!("{name}");
    }
    Ok(())
}

/// `fjord topic describe`: per partition its leader, start and end offsets, replicas and
/// in-sync replicas.
fn describe(name: &str, bootstrap: &str) -> Result<(), CliError> {
    let mut client = Client::connect(bootstrap)?;
    let metadata = client.metadata(Some(&[name.to_string()]), false)?;
    let topic =
        metadata.topics.first().ok_or_else(|| CliError::failure("empty Metadata response"))?;
    if topic.error_code != 0 {
        return Err(CliError::failure(format!(
            "cannot describe topic {name}: {}",
            error_name(topic.error_code)
        )));
    }
    let mut partitions: Vec<_> = topic.partitions.iter().collect();
    partitions.sort_by_key(|p| p.partition_index);
    println!("topic {name}: {} partitions", partitions.len());
    println!(
        "{:>9}  {:>6}  {:>12}  {:>12}  {:<16}  in-sync",
        "partition", "leader", "start offset", "end offset", "replicas"
    );
    // Two ListOffsets per leader, not two per partition.
    let led: Vec<(i32, i32)> =
        partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
    let starts = list_offsets_by_leader(&mut client, name, led.iter().copied(), -2)?;
    let ends = list_offsets_by_leader(&mut client, name, led.iter().copied(), -1)?;
    for partition in partitions {
        let leader = partition.leader_id.0;
        let start = starts[&partition.partition_index];
        let end = ends[&partition.partition_index];
        let list = |ids: &[kafka_protocol::messages::BrokerId]| {
            ids.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(",")
        };
        println!(
            "{:>9}  {:>6}  {:>12}  {:>12}  {:<16}  {}",
            partition.partition_index,
            leader,
            start,
            end,
            list(&partition.replica_nodes),
            list(&partition.isr_nodes)
        );
    }
    let overrides = topic_overrides(&mut client, name)?;
    if !overrides.is_empty() {
        println!();
        let pairs: Vec<String> = overrides.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("configs: {}", pairs.join(" "));
    }
    let compacted = overrides
        .iter()
        .any(|(k, v)| k == "cleanup.policy" && v.split(',').any(|p| p.trim() == "compact"));
    if compacted {
        describe_cleaning(&mut client, name, &led)?;
    }
    Ok(())
}

/// The configs set on topic `name` itself (DescribeConfigs' source TOPIC_CONFIG).
fn topic_overrides(client: &mut Client, name: &str) -> Result<Vec<(String, String)>, CliError> {
    let mut wanted = DescribeConfigsResource::default();
    wanted.resource_type = 2; // TOPIC
    wanted.resource_name = name.to_string().into();
    wanted.configuration_keys = None; // all of them
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![wanted];
    let response = client.send(-1, &request)?;
    let result = response
        .results
        .first()
        .ok_or_else(|| CliError::failure("empty DescribeConfigs response"))?;
    if result.error_code != 0 {
        let what = format!("cannot describe the configs of topic {name}");
        return Err(refused(&what, result.error_code, result.error_message.as_deref()));
    }
    const TOPIC_CONFIG: i8 = 1;
    Ok(result
        .configs
        .iter()
        .filter(|c| c.config_source == TOPIC_CONFIG)
        .map(|c| (c.name.to_string(), c.value.as_deref().unwrap_or("(null)").to_string()))
        .collect())
}

/// Per partition of a compacted topic, its leader's cleaning: the cleanable ratio (dirty
/// bytes over cleanable bytes, as last measured) and the last pass that cleaned segments,
/// from the status Fjord tags DescribeLogDirs answers with (`CleanerStatus`).
fn describe_cleaning(client: &mut Client, name: &str, led: &[(i32, i32)]) -> Result<(), CliError> {
    let mut by_leader: std::collections::BTreeMap<i32, Vec<i32>> = Default::default();
    for (partition, leader) in led.iter().filter(|(_, leader)| *leader >= 0) {
        by_leader.entry(*leader).or_default().push(*partition);
    }
    // Every partition is listed; one whose leader does not answer shows `unknown`.
    let mut statuses: std::collections::BTreeMap<i32, Option<CleanerStatus>> =
        led.iter().map(|(partition, _)| (*partition, None)).collect();
    for (leader, partitions) in by_leader {
        let mut topic = DescribableLogDirTopic::default();
        topic.topic = TopicName(name.to_string().into());
        topic.partitions = partitions;
        let mut request = DescribeLogDirsRequest::default();
        request.topics = Some(vec![topic]);
        let response = match client.send(leader, &request) {
            Ok(response) => response,
            Err(error) => {
                eprintln!("fjord: broker {leader} did not tell its cleaning: {}", error.message);
                continue;
            }
        };
        for dir in &response.results {
            for found in dir.topics.iter().filter(|t| t.name.as_str() == name) {
                for partition in &found.partitions {
                    let status = partition
                        .unknown_tagged_fields
                        .get(&CleanerStatus::TAG)
                        .and_then(|bytes| CleanerStatus::decode(bytes));
                    statuses.insert(partition.partition_index, status);
                }
            }
        }
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    println!();
    println!("cleaning:");
    println!(
        "{:>9}  {:>9}  {:>18}  {:>15}  {:>12}",
        "partition", "cleanable", "last pass", "records removed", "bytes after"
    );
    for (partition, status) in statuses {
        let Some(status) = status else {
            println!("{partition:>9}  {:>9}", "unknown");
            continue;
        };
        let ratio =
            status.dirty_ppm.map_or("-".to_string(), |ppm| format!("{:.3}", f64::from(ppm) / 1e6));
        let (last, removed, after) = match status.last_pass_ms {
            Some(ms) => (
                format!("{:.1} s ago", (now_ms - ms).max(0) as f64 / 1000.0),
                status.records_removed.to_string(),
                status.bytes_after.to_string(),
            ),
            None => ("never".to_string(), "-".to_string(), "-".to_string()),
        };
        println!("{partition:>9}  {ratio:>9}  {last:>18}  {removed:>15}  {after:>12}");
    }
    Ok(())
}

/// `fjord topic delete`.
fn delete(name: &str, bootstrap: &str) -> Result<(), CliError> {
    let mut client = Client::connect(bootstrap)?;
    let mut request = DeleteTopicsRequest::default();
    request.topic_names = vec![TopicName(name.to_string().into())];
    request.timeout_ms = 30_000;
    let response = client.send_at_most(-1, &request, super::client::DELETE_TOPICS_VERSION_MAX)?;
    let result = response
        .responses
        .first()
        .ok_or_else(|| CliError::failure("empty DeleteTopics response"))?;
    if result.error_code != 0 {
        return Err(CliError::failure(format!(
            "cannot delete topic {name}: {}",
            error_name(result.error_code)
        )));
    }
    println!("deleted topic {name}");
    Ok(())
}
