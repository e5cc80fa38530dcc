//! `fjord produce`: lines from stdin become records. Keyed records go to
//! murmur2(key) mod partitions, like the Java client; keyless ones fill one partition's
//! batch at a time and then move to the next (round-robin, sticky per batch).

use std::collections::BTreeMap;
use std::io::BufRead;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::client::{partition_for_key, Client};
use super::error::CliError;
use crate::clock::now_ms;

/// Kafka error codes worth retrying: the partition moves or is not ready yet.
const RETRIABLE: &[i16] = &[3, 5, 6, 7, 19, 20];
/// Attempts per batch before giving up.
const SEND_ATTEMPTS_MAX: u32 = 40;
/// Pause between attempts.
const RETRY_BACKOFF_MS: u64 = 250;
/// Records per batch at most: bounds the memory of pending batches.
const BATCH_RECORDS_MAX: usize = 100_000;
/// Bytes per batch at most (before compression), below the broker's default max message size.
const BATCH_BYTES_MAX: usize = 1024 * 1024 - 4096;

#[derive(Debug, clap::Args)]
pub(super) struct ProduceArgs {
    /// Topic to write to.
    #[arg(long, short = 't')]
    topic: String,
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// The key of every record.
    #[arg(long, short = 'k', conflicts_with = "key_separator")]
    key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<String>,
    /// Write every record to this partition.
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// -1 (all in-sync replicas), 0 (no answer) or 1 (leader).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    acks: i16,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
}

/// The records waiting to be sent to one partition, and their size as counted against
/// `BATCH_BYTES_MAX`.
struct Pending {
    records: Vec<Record>,
    bytes: usize,
}

impl Pending {
    /// Adds a record of `key` and `value`, stamped now.
    fn push(&mut self, key: Option<String>, value: String) {
        self.bytes += value.len() + key.as_ref().map_or(0, String::len) + 32;
        self.records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: self.records.len() as i64,
            // The codec reads a record's sequence as the batch's base sequence (-1: not
            // idempotent) plus its offset delta, and starts a new batch where that breaks:
            // with -1 everywhere every record became a batch of its own.
            sequence: self.records.len() as i32 - 1,
            timestamp: now_ms(),
            key: key.map(Bytes::from),
            value: Some(Bytes::from(value)),
            headers: IndexMap::new(),
        });
    }
}

pub(super) fn run(args: ProduceArgs) -> Result<(), CliError> {
    let compression = parse_compression(&args.compression)?;
    validate(&args)?;
    let mut client = Client::connect(&args.bootstrap)?;
    let leaders = topic_leaders(&mut client, &args)?;
    let partitions = leaders.len() as i32;
    let mut sender = Sender {
        client,
        topic: args.topic.clone(),
        leaders,
        acks: args.acks,
        compression,
        sent: 0,
    };
    let mut pending: BTreeMap<i32, Pending> = BTreeMap::new();
    let mut sticky = 0i32;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| CliError::failure(format!("cannot read stdin: {e}")))?;
        let (key, value) = split_key(&args, line);
        let partition = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key.as_bytes(), partitions),
            (None, None) => sticky,
        };
        let entry =
            pending.entry(partition).or_insert_with(|| Pending { records: Vec::new(), bytes: 0 });
        entry.push(key, value);
        if entry.records.len() >= args.batch_records || entry.bytes >= BATCH_BYTES_MAX {
            let batch = pending.remove(&partition).expect("just filled");
            sender.send(partition, batch.records)?;
            if args.partition.is_none() {
                sticky = (sticky + 1) % partitions;
            }
        }
    }
    for (partition, batch) in std::mem::take(&mut pending) {
        sender.send(partition, batch.records)?;
    }
    eprintln!("produced {} records to {}", sender.sent, args.topic);
    Ok(())
}

fn parse_compression(name: &str) -> Result<Compression, CliError> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => {
            return Err(CliError::usage(format!("unknown compression {other:?}"))
                .with_hint("use none, gzip, snappy, lz4 or zstd"))
        }
    })
}

fn validate(args: &ProduceArgs) -> Result<(), CliError> {
    if !matches!(args.acks, -1..=1) {
        return Err(CliError::usage(format!("--acks must be -1, 0 or 1, got {}", args.acks)));
    }
    if args.batch_records == 0 || args.batch_records > BATCH_RECORDS_MAX {
        return Err(CliError::usage(format!(
            "--batch-records must be between 1 and {BATCH_RECORDS_MAX}"
        )));
    }
    Ok(())
}

/// Partition -> leader of the topic (created if the broker creates topics on metadata),
/// with `--partition` checked against it.
fn topic_leaders(client: &mut Client, args: &ProduceArgs) -> Result<BTreeMap<i32, i32>, CliError> {
    let leaders =
        client.partition_leaders(&args.topic, true, "create it with `fjord topic create`")?;
    if let Some(p) = args.partition {
        if !leaders.contains_key(&p) {
            return Err(CliError::usage(format!(
                "topic {} has no partition {p} (it has {})",
                args.topic,
                leaders.len()
            )));
        }
    }
    Ok(leaders)
}

/// A line as (key, value): `--key` for every line, or the line split at the first
/// `--key-separator` (no key where it has none), or no key.
fn split_key(args: &ProduceArgs, line: String) -> (Option<String>, String) {
    match (&args.key, &args.key_separator) {
        (Some(key), _) => (Some(key.clone()), line),
        (None, Some(sep)) => match line.split_once(sep.as_str()) {
            Some((k, v)) => (Some(k.to_string()), v.to_string()),
            None => (None, line),
        },
        (None, None) => (None, line),
    }
}

struct Sender {
    client: Client,
    topic: String,
    leaders: BTreeMap<i32, i32>,
    acks: i16,
    compression: Compression,
    sent: u64,
}

impl Sender {
    /// Sends `records` as one batch to `partition`'s leader, retrying while the partition
    /// moves or is not ready, up to `SEND_ATTEMPTS_MAX` times.
    fn send(&mut self, partition: i32, records: Vec<Record>) -> Result<(), CliError> {
        if records.is_empty() {
            return Ok(());
        }
        let request = self.request(partition, &records)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let leader = self.leaders[&partition];
            if self.acks == 0 {
                // No response comes back for acks=0.
                return self
                    .client
                    .send_without_response(leader, &request, super::client::PRODUCE_VERSION_MAX)
                    .map(|()| self.sent += records.len() as u64);
            }
            let outcome =
                self.client.send_at_most(leader, &request, super::client::PRODUCE_VERSION_MAX);
            match self.failure(&outcome) {
                None => break,
                Some((true, _)) if attempt < SEND_ATTEMPTS_MAX => {
                    // Leadership moves or a topic still propagating: refresh and try again.
                    std::thread::sleep(std::time::Duration::from_millis(RETRY_BACKOFF_MS));
                    self.refresh_leaders();
                }
                Some((_, message)) => return Err(CliError::failure(message)),
            }
        }
        self.sent += records.len() as u64;
        Ok(())
    }

    /// A Produce request of `records`, encoded as one batch, to `partition`.
    fn request(&self, partition: i32, records: &[Record]) -> Result<ProduceRequest, CliError> {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records,
            &RecordEncodeOptions { version: 2, compression: self.compression },
        )
        .map_err(|e| CliError::failure(format!("cannot encode records: {e}")))?;
        let mut data = PartitionProduceData::default();
        data.index = partition;
        data.records = Some(buf.freeze());
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(self.topic.clone().into());
        topic.partition_data = vec![data];
        let mut request = ProduceRequest::default();
        request.acks = self.acks;
        request.timeout_ms = 30_000;
        request.topic_data = vec![topic];
        Ok(request)
    }

    /// What went wrong with a send, if anything: (whether it is worth retrying, message).
    fn failure(&self, outcome: &Result<ProduceResponse, CliError>) -> Option<(bool, String)> {
        match outcome {
            Err(error) => Some((true, error.message.clone())),
            Ok(response) => response
                .responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .find(|p| p.error_code != 0)
                .map(|p| {
                    let message = p
                        .error_message
                        .as_ref()
                        .map_or(String::new(), |m| format!(": {}", m.as_str()));
                    (
                        RETRIABLE.contains(&p.error_code),
                        format!(
                            "produce to {}-{} failed: {}{message}",
                            self.topic,
                            p.index,
                            super::error::error_name(p.error_code)
                        ),
                    )
                }),
        }
    }

    /// Asks for the topic's leaders again and keeps those that are known; a failed lookup
    /// leaves them as they were (the next attempt tells).
    fn refresh_leaders(&mut self) {
        let Ok(metadata) = self.client.metadata(Some(std::slice::from_ref(&self.topic)), false)
        else {
            return;
        };
        if let Some(topic) = metadata.topics.first() {
            for p in &topic.partitions {
                if p.leader_id.0 >= 0 {
                    self.leaders.insert(p.partition_index, p.leader_id.0);
                }
            }
        }
    }
}
