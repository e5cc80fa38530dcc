//! `fjord consume`: read records from one partition or all, from the beginning, the end, an
//! offset or a timestamp, and print them (values; keys, offsets and timestamps on request).

use std::collections::BTreeMap;
use std::io::Write;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::records::{Record, RecordBatchDecoder};

use super::client::list_offset;
use super::client::Client;
use super::error::CliError;
use super::group::{Membership, Pulse};

/// Bytes asked for per partition per fetch.
const FETCH_PARTITION_BYTES: i32 = 4 * 1024 * 1024;
/// Bytes asked for per fetch.
const FETCH_BYTES: i32 = 16 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub(super) struct ConsumeArgs {
    /// Topic to read.
    #[arg(long, short = 't')]
    topic: String,
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Read only this partition [default: all].
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Where to start: beginning, end, an offset, or @TIMESTAMP_MS.
    #[arg(long, short = 'o', default_value = "beginning")]
    from: String,
    /// Stop after this many records.
    #[arg(long, short = 'c')]
    count: Option<u64>,
    /// Stop once every partition is read to its end.
    #[arg(long, short = 'e')]
    exit_at_end: bool,
    /// Print partition and offset before each record.
    #[arg(long)]
    print_offsets: bool,
    /// Print the key before each value.
    #[arg(long)]
    print_keys: bool,
    /// Print the timestamp before each record.
    #[arg(long)]
    print_timestamps: bool,
    /// Consume as a member of this consumer group: partitions are shared with the group's
    /// other members, reading resumes from the group's committed offsets (`--from` applies
    /// where nothing is committed), and progress is committed as it goes.
    #[arg(long, short = 'g')]
    group: Option<String>,
}

enum Start {
    Beginning,
    End,
    Offset(i64),
    Timestamp(i64),
}

fn parse_start(text: &str) -> Result<Start, CliError> {
    let hint = "use beginning, end, an offset such as 42, or @TIMESTAMP_MS such as @1700000000000";
    match text {
        "beginning" | "earliest" => Ok(Start::Beginning),
        "end" | "latest" => Ok(Start::End),
        t if t.starts_with('@') => t[1..].parse().map(Start::Timestamp).map_err(|_e| {
            CliError::usage(format!("--from {t:?} is not a timestamp")).with_hint(hint)
        }),
        t => match t.parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(Start::Offset(offset)),
            _ => Err(CliError::usage(format!("--from {t:?} is not understood")).with_hint(hint)),
        },
    }
}

pub(super) fn run(args: ConsumeArgs) -> Result<(), CliError> {
    let start = parse_start(&args.from)?;
    let mut client = Client::connect(&args.bootstrap)?;
    let all_leaders = partition_leaders(&mut client, &args)?;
    let mut membership = match &args.group {
        Some(group) => Some(Membership::new(&mut client, group, &args.topic)?),
        None => None,
    };
    // Position and high watermark per partition.
    let mut positions: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    let mut leaders = all_leaders.clone();
    if let Some(member) = membership.as_mut() {
        leaders = assign(&mut client, member, &all_leaders, &start, &args.topic, &mut positions)?;
    } else {
        for (&partition, &leader) in &leaders {
            let position = start_position(&mut client, leader, &args.topic, partition, &start)?;
            positions.insert(partition, (position, i64::MAX));
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    loop {
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
        if args.exit_at_end && positions.values().all(|(position, high)| position >= high) {
            break;
        }
        if leaders.is_empty() {
            // A group member without partitions: stay in the group, keep heartbeating.
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        // One fetch per leader with all of its partitions.
        for (leader, partitions) in by_leader(&leaders) {
            let response = fetch(&mut client, leader, &args.topic, &partitions, &positions)?;
            for data in response.responses.iter().flat_map(|topic| &topic.partitions) {
                print_partition(&args, data, &mut positions, &mut out, &mut printed)?;
            }
        }
        let _ = out.flush();
        if let Some(member) = membership.as_mut() {
            if !commit_and_heartbeat(&mut client, member, &positions)? {
                leaders =
                    assign(&mut client, member, &all_leaders, &start, &args.topic, &mut positions)?;
            }
        } else if leaders.is_empty() {
            break;
        }
    }
    let _ = out.flush();
    if let Some(member) = membership.as_ref() {
        let _ = member.commit(&mut client, &next_offsets(&positions))?;
        member.leave(&mut client)?;
    }
    Ok(())
}

/// Partition -> leader of the topic, or of `--partition` alone.
fn partition_leaders(
    client: &mut Client,
    args: &ConsumeArgs,
) -> Result<BTreeMap<i32, i32>, CliError> {
    let leaders =
        client.partition_leaders(&args.topic, false, "list topics with `fjord topic list`")?;
    let Some(p) = args.partition else {
        return Ok(leaders);
    };
    let leader = *leaders
        .get(&p)
        .ok_or_else(|| CliError::usage(format!("topic {} has no partition {p}", args.topic)))?;
    Ok(BTreeMap::from([(p, leader)]))
}

/// Leader -> its partitions among `leaders`.
fn by_leader(leaders: &BTreeMap<i32, i32>) -> BTreeMap<i32, Vec<i32>> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (&partition, &leader) in leaders {
        by_leader.entry(leader).or_default().push(partition);
    }
    by_leader
}

/// One Fetch of `partitions` of `topic` from `leader`, each from its position.
fn fetch(
    client: &mut Client,
    leader: i32,
    topic: &str,
    partitions: &[i32],
    positions: &BTreeMap<i32, (i64, i64)>,
) -> Result<FetchResponse, CliError> {
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = TopicName(topic.to_string().into());
    for &partition in partitions {
        let mut p = FetchPartition::default();
        p.partition = partition;
        p.fetch_offset = positions[&partition].0;
        p.partition_max_bytes = FETCH_PARTITION_BYTES;
        p.log_start_offset = -1;
        fetch_topic.partitions.push(p);
    }
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = 500;
    request.min_bytes = 1;
    request.max_bytes = FETCH_BYTES;
    request.session_epoch = -1;
    request.topics = vec![fetch_topic];
    client.send_at_most(leader, &request, super::client::FETCH_VERSION_MAX)
}

/// Prints the records of one partition's fetched `data` from its position on, moving the
/// position past each record printed (and past control records), until `--count` is met.
fn print_partition(
    args: &ConsumeArgs,
    data: &PartitionData,
    positions: &mut BTreeMap<i32, (i64, i64)>,
    out: &mut impl Write,
    printed: &mut u64,
) -> Result<(), CliError> {
    let partition = data.partition_index;
    if data.error_code != 0 {
        return Err(CliError::failure(format!(
            "fetch {}-{partition} at offset {}: {}",
            args.topic,
            positions.get(&partition).map_or(-1, |p| p.0),
            super::error::error_name(data.error_code)
        ))
        .with_hint("the offset may be below the log start (retention) or past the end"));
    }
    let Some(entry) = positions.get_mut(&partition) else { return Ok(()) };
    entry.1 = data.high_watermark;
    let Some(mut records) = data.records.clone() else { return Ok(()) };
    while whole_batch_available(&records) {
        let next = batch_next_offset(&records);
        let set = RecordBatchDecoder::decode(&mut records).map_err(|e| {
            CliError::failure(format!("cannot decode records of {}-{partition}: {e}", args.topic))
        })?;
        for record in set.records {
            if record.offset < entry.0 {
                continue;
            }
            if record.control {
                entry.0 = record.offset + 1;
                continue;
            }
            if args.count.is_some_and(|c| *printed >= c) {
                return Ok(());
            }
            print_record(args, partition, &record, out);
            *printed += 1;
            entry.0 = record.offset + 1;
        }
        // Past the whole batch: compaction leaves batches whose last offsets hold no record
        // (or no record at all), and the next fetch starts after them, as Kafka's clients do.
        entry.0 = entry.0.max(next);
    }
    Ok(())
}

/// The offset after the batch at the start of `records` (its base offset plus its last
/// offset delta, plus one), from a header `whole_batch_available` vouched for.
fn batch_next_offset(records: &[u8]) -> i64 {
    let base = i64::from_be_bytes(records[0..8].try_into().expect("8 bytes"));
    let delta =
        records.get(23..27).map_or(0, |d| i32::from_be_bytes(d.try_into().expect("4 bytes")));
    base.saturating_add(i64::from(delta)).saturating_add(1)
}

/// One record as a line: partition:offset, timestamp and key first if asked, then the value.
fn print_record(args: &ConsumeArgs, partition: i32, record: &Record, out: &mut impl Write) {
    if args.print_offsets {
        let _ = write!(out, "{partition}:{}\t", record.offset);
    }
    if args.print_timestamps {
        let _ = write!(out, "{}\t", record.timestamp);
    }
    if args.print_keys {
        let key =
            record.key.as_ref().map_or(String::new(), |k| String::from_utf8_lossy(k).into_owned());
        let _ = write!(out, "{key}\t");
    }
    let value =
        record.value.as_ref().map_or(String::new(), |v| String::from_utf8_lossy(v).into_owned());
    let _ = writeln!(out, "{value}");
}

/// Commits the positions and heartbeats when due; false if the member must rejoin (its
/// commit was refused or the group is rebalancing).
fn commit_and_heartbeat(
    client: &mut Client,
    member: &mut Membership,
    positions: &BTreeMap<i32, (i64, i64)>,
) -> Result<bool, CliError> {
    let committed = member.commit(client, &next_offsets(positions))?;
    let pulse = member.heartbeat_if_due(client)?;
    Ok(committed && !matches!(pulse, Pulse::Rejoin))
}

/// The offset to read next per partition, as a group commits it.
fn next_offsets(positions: &BTreeMap<i32, (i64, i64)>) -> BTreeMap<i32, i64> {
    positions.iter().map(|(p, (o, _))| (*p, *o)).collect()
}

fn start_position(
    client: &mut Client,
    leader: i32,
    topic: &str,
    partition: i32,
    start: &Start,
) -> Result<i64, CliError> {
    Ok(match start {
        Start::Beginning => list_offset(client, leader, topic, partition, -2)?,
        Start::End => list_offset(client, leader, topic, partition, -1)?,
        Start::Offset(offset) => *offset,
        Start::Timestamp(ts) => match list_offset(client, leader, topic, partition, *ts)? {
            -1 => list_offset(client, leader, topic, partition, -1)?,
            offset => offset,
        },
    })
}

/// (Re)joins the group and sets positions for the partitions it assigns: the committed
/// offset where there is one, else `start`. Returns the assigned partitions' leaders.
fn assign(
    client: &mut Client,
    member: &mut Membership,
    all_leaders: &BTreeMap<i32, i32>,
    start: &Start,
    topic: &str,
    positions: &mut BTreeMap<i32, (i64, i64)>,
) -> Result<BTreeMap<i32, i32>, CliError> {
    let mine = member.join(client)?;
    eprintln!(
        "group {}: generation {}, assigned partitions {:?}",
        member.group, member.generation, mine
    );
    let committed = member.committed(client, &mine)?;
    positions.clear();
    let mut leaders = BTreeMap::new();
    for partition in mine {
        let Some(&leader) = all_leaders.get(&partition) else { continue };
        let position = match committed.get(&partition) {
            Some(&offset) if offset >= 0 => offset,
            _ => start_position(client, leader, topic, partition, start)?,
        };
        positions.insert(partition, (position, i64::MAX));
        leaders.insert(partition, leader);
    }
    Ok(leaders)
}

/// Whether `records` starts with a whole batch (a broker may cut the last one short).
fn whole_batch_available(records: &[u8]) -> bool {
    if records.len() < 12 {
        return false;
    }
    let length = i32::from_be_bytes([records[8], records[9], records[10], records[11]]);
    length >= 0 && records.len() >= 12 + length as usize
}
