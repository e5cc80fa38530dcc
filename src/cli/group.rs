//! `fjord group list|describe|reset-offsets`, and the consumer-group membership used by
//! `fjord consume --group`: join, range-assign as leader, sync, heartbeat, commit, leave.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;

use super::client::{list_offsets_by_leader, Client};
use super::error::{error_name, CliError};

#[derive(Debug, clap::Args)]
pub(super) struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GroupCommand {
    /// List consumer groups.
    List {
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Show a group's state, members, assignment, and per partition the committed offset,
    /// the end offset and the lag.
    Describe {
        group: String,
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Set a group's committed offsets for a topic (refused while the group has members).
    ResetOffsets {
        group: String,
        #[arg(long, short = 't')]
        topic: String,
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[arg(long, group = "to", required = true)]
        to_earliest: bool,
        #[arg(long, group = "to", required = true)]
        to_latest: bool,
        #[arg(long, group = "to", required = true, value_name = "OFFSET")]
        to_offset: Option<i64>,
    },
}

/// How many times the coordinator lookup is asked while the broker answers that it has none
/// yet (Kafka creates its offsets topic on the first lookup, and loads it after a failover).
const COORDINATOR_ATTEMPTS_MAX: u32 = 50;
/// Pause between those attempts.
const COORDINATOR_RETRY_MS: u64 = 200;
/// JoinGroup and SyncGroup rounds before a member gives up on a group that keeps
/// rebalancing.
const JOIN_ATTEMPTS_MAX: u32 = 20;
/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: ask again.
const COORDINATOR_RETRIABLE: [i16; 3] = [14, 15, 16];

/// Finds the group's coordinator and registers its address with the client.
pub(super) fn coordinator(client: &mut Client, group: &str) -> Result<i32, CliError> {
    let mut request = FindCoordinatorRequest::default();
    request.key = group.to_string().into();
    let mut attempt = 1;
    let response = loop {
        let response = client.send_at_most(-1, &request, 3)?;
        if !COORDINATOR_RETRIABLE.contains(&response.error_code)
            || attempt >= COORDINATOR_ATTEMPTS_MAX
        {
            break response;
        }
        attempt += 1;
        std::thread::sleep(std::time::Duration::from_millis(COORDINATOR_RETRY_MS));
    };
    if response.error_code != 0 {
        return Err(CliError::failure(format!(
            "cannot find the coordinator of group {group}: {}",
            error_name(response.error_code)
        )));
    }
    client.add_broker(response.node_id.0, format!("{}:{}", response.host.as_str(), response.port));
    Ok(response.node_id.0)
}

fn committed_offsets(
    client: &mut Client,
    node: i32,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<BTreeMap<(String, i32), i64>, CliError> {
    let mut request = OffsetFetchRequest::default();
    request.group_id = GroupId(group.to_string().into());
    request.topics = topics.map(|topics| {
        topics
            .into_iter()
            .map(|(name, partitions)| {
                let mut t = OffsetFetchRequestTopic::default();
                t.name = TopicName(name.into());
                t.partition_indexes = partitions;
                t
            })
            .collect()
    });
    let response = client.send_at_most(node, &request, super::client::OFFSET_FETCH_VERSION_MAX)?;
    if response.error_code != 0 {
        return Err(CliError::failure(format!(
            "OffsetFetch for group {group}: {}",
            error_name(response.error_code)
        )));
    }
    let mut out = BTreeMap::new();
    for topic in response.topics {
        for p in topic.partitions {
            if p.error_code != 0 {
                return Err(CliError::failure(format!(
                    "OffsetFetch {}-{}: {}",
                    topic.name.0.as_str(),
                    p.partition_index,
                    error_name(p.error_code)
                )));
            }
            out.insert((topic.name.0.to_string(), p.partition_index), p.committed_offset);
        }
    }
    Ok(out)
}

/// Decodes a consumer-protocol assignment (version prefix, then the body).
pub(super) fn decode_assignment(bytes: &Bytes) -> Vec<(String, Vec<i32>)> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(assignment) => assignment
            .assigned_partitions
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn encode_versioned<T: Encodable>(value: &T) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    value.encode(&mut buf, 0).expect("v0 consumer protocol encodes");
    buf.freeze()
}

fn describe_group(
    client: &mut Client,
    node: i32,
    group: &str,
) -> Result<kafka_protocol::messages::describe_groups_response::DescribedGroup, CliError> {
    let mut request = DescribeGroupsRequest::default();
    request.groups = vec![GroupId(group.to_string().into())];
    let response = client.send(node, &request)?;
    let described = response
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| CliError::failure("empty DescribeGroups response"))?;
    if described.error_code != 0 {
        return Err(CliError::failure(format!(
            "cannot describe group {group}: {}",
            error_name(described.error_code)
        )));
    }
    Ok(described)
}

pub(super) fn run(args: GroupArgs) -> Result<(), CliError> {
    match args.command {
        GroupCommand::List { bootstrap } => list(&bootstrap),
        GroupCommand::Describe { group, bootstrap } => describe(&group, &bootstrap),
        GroupCommand::ResetOffsets {
            group,
            topic,
            bootstrap,
            to_earliest,
            to_latest,
            to_offset,
        } => {
            let to = match (to_earliest, to_latest) {
                (true, _) => ResetTo::Earliest,
                (_, true) => ResetTo::Latest,
                _ => ResetTo::Offset(to_offset.expect("clap requires one of the three")),
            };
            reset_offsets(&group, &topic, &bootstrap, to)
        }
    }
}

/// `fjord group list`: the groups, sorted, with their state where the broker gives one.
fn list(bootstrap: &str) -> Result<(), CliError> {
    let mut client = Client::connect(bootstrap)?;
    let response = client.send(-1, &ListGroupsRequest::default())?;
    if response.error_code != 0 {
        return Err(CliError::failure(format!("ListGroups: {}", error_name(response.error_code))));
    }
    let mut groups: Vec<(String, String)> = response
        .groups
        .iter()
        .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
        .collect();
    groups.sort();
    for (group, state) in groups {
        if state.is_empty() {
            println!("{group}");
        } else {
            println!("{group}\t{state}");
        }
    }
    Ok(())
}

/// `fjord group describe`: the group and its members, then per partition the committed
/// offset, the end offset, the lag and the member that owns it.
fn describe(group: &str, bootstrap: &str) -> Result<(), CliError> {
    let mut client = Client::connect(bootstrap)?;
    let node = coordinator(&mut client, group)?;
    let described = describe_group(&mut client, node, group)?;
    println!(
        "group {group}: {} ({} members, protocol {})",
        described.group_state.as_str(),
        described.members.len(),
        described.protocol_data.as_str()
    );
    let owner = print_members(&described);
    let committed = committed_offsets(&mut client, node, group, None)?;
    println!(
        "{:<24} {:>9} {:>12} {:>12} {:>10}  member",
        "topic", "partition", "committed", "end offset", "lag"
    );
    let mut keys: Vec<(String, i32)> = committed.keys().cloned().collect();
    for key in owner.keys() {
        if !committed.contains_key(key) {
            keys.push(key.clone());
        }
    }
    keys.sort();
    let ends = end_offsets(&mut client, &keys)?;
    for (topic, partition) in keys {
        let end = ends.get(&(topic.clone(), partition)).copied().unwrap_or(-1);
        let done = committed.get(&(topic.clone(), partition)).copied().unwrap_or(-1);
        let lag =
            if done >= 0 && end >= 0 { (end - done).max(0).to_string() } else { "-".to_string() };
        let shown = if done >= 0 { done.to_string() } else { "-".to_string() };
        println!(
            "{topic:<24} {partition:>9} {shown:>12} {end:>12} {lag:>10}  {}",
            owner.get(&(topic.clone(), partition)).map_or("-", String::as_str)
        );
    }
    Ok(())
}

/// Prints a line per member with its assignment; returns (topic, partition) -> member id.
fn print_members(
    described: &describe_groups_response::DescribedGroup,
) -> BTreeMap<(String, i32), String> {
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for member in &described.members {
        let assigned = decode_assignment(&member.member_assignment);
        let parts: Vec<String> = assigned
            .iter()
            .map(|(t, ps)| {
                format!("{t}:{}", ps.iter().map(i32::to_string).collect::<Vec<_>>().join(","))
            })
            .collect();
        println!(
            "  member {} ({}{}) {}",
            member.member_id.as_str(),
            member.client_id.as_str(),
            member.client_host.as_str(),
            parts.join(" ")
        );
        for (topic, partitions) in assigned {
            for p in partitions {
                owner.insert((topic.clone(), p), member.member_id.to_string());
            }
        }
    }
    owner
}

/// End offsets of `keys` (sorted (topic, partition)): one Metadata per topic, one
/// ListOffsets per topic and leader.
fn end_offsets(
    client: &mut Client,
    keys: &[(String, i32)],
) -> Result<BTreeMap<(String, i32), i64>, CliError> {
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut topics: Vec<&String> = keys.iter().map(|(topic, _)| topic).collect();
    topics.dedup();
    for topic in topics {
        let metadata = client.metadata(Some(std::slice::from_ref(topic)), false)?;
        let leaders: BTreeMap<i32, i32> = metadata
            .topics
            .first()
            .map(|t| t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect())
            .unwrap_or_default();
        let led = keys
            .iter()
            .filter(|(t, _)| t == topic)
            .filter_map(|(_, p)| leaders.get(p).map(|leader| (*p, *leader)));
        for (partition, end) in list_offsets_by_leader(client, topic, led, -1)? {
            ends.insert((topic.clone(), partition), end);
        }
    }
    Ok(ends)
}

/// Where `reset-offsets` moves a group's offsets.
enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
}

/// `fjord group reset-offsets`: commits the new offset of every partition of `topic` for
/// `group`, which must have no members.
fn reset_offsets(group: &str, topic: &str, bootstrap: &str, to: ResetTo) -> Result<(), CliError> {
    let mut client = Client::connect(bootstrap)?;
    let node = coordinator(&mut client, group)?;
    let described = describe_group(&mut client, node, group)?;
    if !described.members.is_empty() {
        return Err(CliError::failure(format!(
            "group {group} has {} active members; stop them first",
            described.members.len()
        ))
        .with_hint("offsets can only be reset while the group is empty"));
    }
    let partitions = topic_partitions(&mut client, topic)?;
    // One ListOffsets per leader.
    let listed = match to {
        ResetTo::Earliest => {
            list_offsets_by_leader(&mut client, topic, partitions.iter().copied(), -2)?
        }
        ResetTo::Latest => {
            list_offsets_by_leader(&mut client, topic, partitions.iter().copied(), -1)?
        }
        ResetTo::Offset(_) => BTreeMap::new(),
    };
    let mut commit_topic = OffsetCommitRequestTopic::default();
    commit_topic.name = TopicName(topic.to_string().into());
    for (partition, _leader) in &partitions {
        let offset = match to {
            ResetTo::Offset(offset) => offset,
            ResetTo::Earliest | ResetTo::Latest => listed[partition],
        };
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = *partition;
        p.committed_offset = offset;
        p.committed_metadata = Some("".into());
        commit_topic.partitions.push(p);
        println!("{topic}-{partition} -> {offset}");
    }
    commit_as_admin(&mut client, node, group, topic, commit_topic)
}

/// (partition, leader) of `topic`, sorted.
fn topic_partitions(client: &mut Client, topic: &str) -> Result<Vec<(i32, i32)>, CliError> {
    let metadata = client.metadata(Some(&[topic.to_string()]), false)?;
    let meta =
        metadata.topics.first().ok_or_else(|| CliError::failure("empty Metadata response"))?;
    if meta.error_code != 0 {
        return Err(CliError::failure(format!("topic {topic}: {}", error_name(meta.error_code))));
    }
    let mut partitions: Vec<(i32, i32)> =
        meta.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
    partitions.sort();
    Ok(partitions)
}

/// Commits `commit_topic`'s offsets for `group` outside any generation (as an admin tool).
fn commit_as_admin(
    client: &mut Client,
    node: i32,
    group: &str,
    topic: &str,
    commit_topic: OffsetCommitRequestTopic,
) -> Result<(), CliError> {
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(group.to_string().into());
    request.generation_id_or_member_epoch = -1;
    request.retention_time_ms = -1;
    request.topics = vec![commit_topic];
    let response = client.send_at_most(node, &request, super::client::OFFSET_COMMIT_VERSION_MAX)?;
    for t in &response.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(CliError::failure(format!(
                    "cannot reset {topic}-{}: {}",
                    p.partition_index,
                    error_name(p.error_code)
                )));
            }
        }
    }
    Ok(())
}

/// A member of a consumer group, driven by `fjord consume --group`.
pub(super) struct Membership {
    pub group: String,
    pub node: i32,
    pub member_id: String,
    pub generation: i32,
    pub topic: String,
    session_timeout_ms: i32,
    last_heartbeat: Instant,
}

/// What a heartbeat said.
pub(super) enum Pulse {
    Fine,
    Rejoin,
}

impl Membership {
    pub(super) fn new(
        client: &mut Client,
        group: &str,
        topic: &str,
    ) -> Result<Membership, CliError> {
        let node = coordinator(client, group)?;
        Ok(Membership {
            group: group.to_string(),
            node,
            member_id: String::new(),
            generation: -1,
            topic: topic.to_string(),
            session_timeout_ms: 10_000,
            last_heartbeat: Instant::now(),
        })
    }

    /// Joins (or rejoins) the group and returns this member's partitions of the topic.
    pub(super) fn join(&mut self, client: &mut Client) -> Result<Vec<i32>, CliError> {
        for _attempt in 0..JOIN_ATTEMPTS_MAX {
            // v5+ would carry a group instance id, v8+ a reason: neither is used.
            let response = client.send_at_most(self.node, &self.join_request(), 4)?;
            if !self.joined(client, &response)? {
                continue;
            }
            self.member_id = response.member_id.to_string();
            self.generation = response.generation_id;
            let assignments = if response.leader == response.member_id {
                self.assign(client, &response)?
            } else {
                Vec::new()
            };
            let Some(assignment) = self.sync(client, assignments)? else {
                continue;
            };
            self.last_heartbeat = Instant::now();
            let mine = decode_assignment(&assignment)
                .into_iter()
                .filter(|(t, _)| *t == self.topic)
                .flat_map(|(_, p)| p)
                .collect();
            return Ok(mine);
        }
        Err(CliError::failure(format!(
            "group {} kept rebalancing; gave up after {JOIN_ATTEMPTS_MAX} attempts",
            self.group
        )))
    }

    /// A JoinGroup as a consumer of the topic, offering the range assignor.
    fn join_request(&self) -> JoinGroupRequest {
        let mut subscription = ConsumerProtocolSubscription::default();
        subscription.topics = vec![self.topic.clone().into()];
        let mut protocol = JoinGroupRequestProtocol::default();
        protocol.name = "range".into();
        protocol.metadata = encode_versioned(&subscription);
        let mut request = JoinGroupRequest::default();
        request.group_id = GroupId(self.group.clone().into());
        request.session_timeout_ms = self.session_timeout_ms;
        request.rebalance_timeout_ms = 30_000;
        request.member_id = self.member_id.clone().into();
        request.protocol_type = "consumer".into();
        request.protocols = vec![protocol];
        request
    }

    /// Whether the JoinGroup `response` joined; false (after taking the member id it
    /// names, forgetting an unknown one, or finding the coordinator again) where joining
    /// again may succeed.
    fn joined(
        &mut self,
        client: &mut Client,
        response: &JoinGroupResponse,
    ) -> Result<bool, CliError> {
        match ResponseError::try_from_code(response.error_code) {
            None if response.error_code == 0 => Ok(true),
            Some(ResponseError::MemberIdRequired) => {
                self.member_id = response.member_id.to_string();
                Ok(false)
            }
            Some(ResponseError::UnknownMemberId) => {
                self.member_id.clear();
                Ok(false)
            }
            Some(ResponseError::RebalanceInProgress) => Ok(false),
            Some(
                ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress,
            ) => {
                // The group moved or its coordinator is still loading it (Kafka, right
                // after creating its offsets topic): look it up again and retry.
                std::thread::sleep(std::time::Duration::from_millis(COORDINATOR_RETRY_MS));
                self.node = coordinator(client, &self.group)?;
                Ok(false)
            }
            _ => Err(CliError::failure(format!(
                "cannot join group {}: {}",
                self.group,
                error_name(response.error_code)
            ))),
        }
    }

    /// SyncGroup with `assignments` (empty unless this member leads); this member's
    /// assignment, or `None` where the group rebalanced meanwhile and must be joined again.
    fn sync(
        &self,
        client: &mut Client,
        assignments: Vec<SyncGroupRequestAssignment>,
    ) -> Result<Option<Bytes>, CliError> {
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(self.group.clone().into());
        sync.generation_id = self.generation;
        sync.member_id = self.member_id.clone().into();
        sync.assignments = assignments;
        let synced = client.send_at_most(self.node, &sync, 4)?;
        if synced.error_code == ResponseError::RebalanceInProgress.code()
            || synced.error_code == ResponseError::IllegalGeneration.code()
        {
            return Ok(None);
        }
        if synced.error_code != 0 {
            return Err(CliError::failure(format!(
                "cannot sync with group {}: {}",
                self.group,
                error_name(synced.error_code)
            )));
        }
        Ok(Some(synced.assignment))
    }

    /// The range assignor, as the group's leader runs it.
    fn assign(
        &self,
        client: &mut Client,
        joined: &JoinGroupResponse,
    ) -> Result<Vec<SyncGroupRequestAssignment>, CliError> {
        let mut members: Vec<(String, Vec<String>)> = joined
            .members
            .iter()
            .map(|m| {
                let mut buf = m.metadata.clone();
                let topics = if buf.remaining() >= 2 {
                    let version = buf.get_i16().clamp(0, 3);
                    ConsumerProtocolSubscription::decode(&mut buf, version)
                        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                (m.member_id.to_string(), topics)
            })
            .collect();
        members.sort();
        let mut topics: Vec<String> = members.iter().flat_map(|(_, t)| t.clone()).collect();
        topics.sort();
        topics.dedup();
        let mut assigned: BTreeMap<String, Vec<AssignedPartitions>> = BTreeMap::new();
        for topic in topics {
            let metadata = client.metadata(Some(std::slice::from_ref(&topic)), false)?;
            let mut partitions: Vec<i32> = metadata
                .topics
                .first()
                .map(|t| t.partitions.iter().map(|p| p.partition_index).collect())
                .unwrap_or_default();
            partitions.sort();
            let subscribers: Vec<&String> =
                members.iter().filter(|(_, t)| t.contains(&topic)).map(|(id, _)| id).collect();
            let n = subscribers.len().max(1);
            let per = partitions.len() / n;
            let extra = partitions.len() % n;
            let mut start = 0;
            for (i, member) in subscribers.iter().enumerate() {
                let count = per + usize::from(i < extra);
                let mut tp = AssignedPartitions::default();
                tp.topic = TopicName(topic.clone().into());
                tp.partitions = partitions[start..start + count].to_vec();
                start += count;
                assigned.entry((*member).clone()).or_default().push(tp);
            }
        }
        Ok(members
            .iter()
            .map(|(id, _)| {
                let mut assignment = ConsumerProtocolAssignment::default();
                assignment.assigned_partitions = assigned.remove(id).unwrap_or_default();
                let mut a = SyncGroupRequestAssignment::default();
                a.member_id = id.clone().into();
                a.assignment = encode_versioned(&assignment);
                a
            })
            .collect())
    }

    /// Heartbeats if a third of the session has passed.
    pub(super) fn heartbeat_if_due(&mut self, client: &mut Client) -> Result<Pulse, CliError> {
        if self.last_heartbeat.elapsed() < Duration::from_millis(self.session_timeout_ms as u64 / 3)
        {
            return Ok(Pulse::Fine);
        }
        let mut request = HeartbeatRequest::default();
        request.group_id = GroupId(self.group.clone().into());
        request.generation_id = self.generation;
        request.member_id = self.member_id.clone().into();
        let response = client.send(self.node, &request)?;
        self.last_heartbeat = Instant::now();
        match response.error_code {
            0 => Ok(Pulse::Fine),
            code if code == ResponseError::RebalanceInProgress.code()
                || code == ResponseError::IllegalGeneration.code()
                || code == ResponseError::UnknownMemberId.code() =>
            {
                if code == ResponseError::UnknownMemberId.code() {
                    self.member_id.clear();
                }
                Ok(Pulse::Rejoin)
            }
            code => Err(CliError::failure(format!(
                "heartbeat to group {}: {}",
                self.group,
                error_name(code)
            ))),
        }
    }

    pub(super) fn committed(
        &self,
        client: &mut Client,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>, CliError> {
        let found = committed_offsets(
            client,
            self.node,
            &self.group,
            Some(vec![(self.topic.clone(), partitions.to_vec())]),
        )?;
        Ok(found.into_iter().map(|((_, p), o)| (p, o)).collect())
    }

    /// Commits the next offsets to read; Ok(false) if the group is rebalancing.
    pub(super) fn commit(
        &self,
        client: &mut Client,
        positions: &BTreeMap<i32, i64>,
    ) -> Result<bool, CliError> {
        if positions.is_empty() {
            return Ok(true);
        }
        let mut topic = OffsetCommitRequestTopic::default();
        topic.name = TopicName(self.topic.clone().into());
        for (&partition, &offset) in positions {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = partition;
            p.committed_offset = offset;
            p.committed_metadata = Some("".into());
            topic.partitions.push(p);
        }
        let mut request = OffsetCommitRequest::default();
        request.group_id = GroupId(self.group.clone().into());
        request.generation_id_or_member_epoch = self.generation;
        request.member_id = self.member_id.clone().into();
        request.retention_time_ms = -1;
        request.topics = vec![topic];
        let response =
            client.send_at_most(self.node, &request, super::client::OFFSET_COMMIT_VERSION_MAX)?;
        for t in &response.topics {
            for p in &t.partitions {
                match p.error_code {
                    0 => {}
                    code if code == ResponseError::RebalanceInProgress.code()
                        || code == ResponseError::IllegalGeneration.code()
                        || code == ResponseError::UnknownMemberId.code() =>
                    {
                        return Ok(false)
                    }
                    code => {
                        return Err(CliError::failure(format!(
                            "commit to group {}: {}",
                            self.group,
                            error_name(code)
                        )))
                    }
                }
            }
        }
        Ok(true)
    }

    pub(super) fn leave(&self, client: &mut Client) -> Result<(), CliError> {
        let mut request = LeaveGroupRequest::default();
        request.group_id = GroupId(self.group.clone().into());
        request.member_id = self.member_id.clone().into();
        client.send_at_most(self.node, &request, 2).map(|_| ())
    }
}
