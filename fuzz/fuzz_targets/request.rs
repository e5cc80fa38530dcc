//! A request frame's payload (what follows the 4-byte size), as a connection hands it to
//! the broker: the header (`protocol::parse_request`), then, as `handlers::dispatch` does,
//! the body of every served API at the versions Fjord serves (`protocol::decode_body` with
//! the request type of the API key the header names). A Produce's records then go through
//! the append's batch validation. Any input must give a value or an error: no panic, no
//! abort, no allocation beyond what the frame's size explains.

#![no_main]

use bytes::Bytes;
use fjord::protocol::{self, Request};
use fjord_storage::batch::{self, Origin};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, DescribeTransactionsRequest,
    EndTxnRequest, ListTransactionsRequest, TxnOffsetCommitRequest, WriteTxnMarkersRequest,
    AlterConfigsRequest, AlterPartitionReassignmentsRequest, ApiKey, ApiVersionsRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    DescribeLogDirsRequest, DescribeProducersRequest, DescribeTopicPartitionsRequest,
    ElectLeadersRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, ListPartitionReassignmentsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest,
    SyncGroupRequest,
};
use libfuzzer_sys::fuzz_target;

// The broker's own allocator (src/main.rs installs it): the `kafka-protocol` decoders
// reserve an array's announced count before reading it, which this allocator maps without
// committing memory (src/alloc.rs). Memory actually used is still bounded by -rss_limit_mb.
#[global_allocator]
static ALLOCATOR: fjord::alloc::Allocator = fjord::alloc::Allocator;

fuzz_target!(|payload: &[u8]| {
    let Ok(request) = protocol::parse_request(Bytes::copy_from_slice(payload)) else { return };
    // `dispatch` answers an API it does not serve, or a version outside its range, without
    // reading the body (ApiVersions reads it only at the versions it serves, from v3).
    let Some((min, max)) = protocol::supported_versions(request.api_key) else { return };
    if request.version < min || request.version > max {
        return;
    }
    decode(&request);
});

fn decode(request: &Request) {
    match request.api_key {
        ApiKey::Produce => {
            if let Ok(body) = protocol::decode_body::<ProduceRequest>(request) {
                validate_records(&body);
            }
        }
        ApiKey::Fetch => drop(protocol::decode_body::<FetchRequest>(request)),
        ApiKey::ListOffsets => drop(protocol::decode_body::<ListOffsetsRequest>(request)),
        ApiKey::Metadata => drop(protocol::decode_body::<MetadataRequest>(request)),
        ApiKey::ApiVersions if request.version >= 3 => {
            drop(protocol::decode_body::<ApiVersionsRequest>(request))
        }
        ApiKey::ApiVersions => {}
        ApiKey::CreateTopics => drop(protocol::decode_body::<CreateTopicsRequest>(request)),
        ApiKey::DeleteTopics => drop(protocol::decode_body::<DeleteTopicsRequest>(request)),
        ApiKey::InitProducerId => drop(protocol::decode_body::<InitProducerIdRequest>(request)),
        ApiKey::DescribeConfigs => drop(protocol::decode_body::<DescribeConfigsRequest>(request)),
        ApiKey::FindCoordinator => drop(protocol::decode_body::<FindCoordinatorRequest>(request)),
        ApiKey::JoinGroup => drop(protocol::decode_body::<JoinGroupRequest>(request)),
        ApiKey::SyncGroup => drop(protocol::decode_body::<SyncGroupRequest>(request)),
        ApiKey::Heartbeat => drop(protocol::decode_body::<HeartbeatRequest>(request)),
        ApiKey::LeaveGroup => drop(protocol::decode_body::<LeaveGroupRequest>(request)),
        ApiKey::OffsetCommit => drop(protocol::decode_body::<OffsetCommitRequest>(request)),
        ApiKey::OffsetFetch => drop(protocol::decode_body::<OffsetFetchRequest>(request)),
        ApiKey::ListGroups => drop(protocol::decode_body::<ListGroupsRequest>(request)),
        ApiKey::DescribeGroups => drop(protocol::decode_body::<DescribeGroupsRequest>(request)),
        ApiKey::DeleteGroups => drop(protocol::decode_body::<DeleteGroupsRequest>(request)),
        ApiKey::OffsetForLeaderEpoch => {
            drop(protocol::decode_body::<OffsetForLeaderEpochRequest>(request))
        }
        ApiKey::DeleteRecords => drop(protocol::decode_body::<DeleteRecordsRequest>(request)),
        ApiKey::AlterConfigs => drop(protocol::decode_body::<AlterConfigsRequest>(request)),
        ApiKey::IncrementalAlterConfigs => {
            drop(protocol::decode_body::<IncrementalAlterConfigsRequest>(request))
        }
        ApiKey::CreatePartitions => drop(protocol::decode_body::<CreatePartitionsRequest>(request)),
        ApiKey::ElectLeaders => drop(protocol::decode_body::<ElectLeadersRequest>(request)),
        ApiKey::AlterPartitionReassignments => {
            drop(protocol::decode_body::<AlterPartitionReassignmentsRequest>(request))
        }
        ApiKey::ListPartitionReassignments => {
            drop(protocol::decode_body::<ListPartitionReassignmentsRequest>(request))
        }
        ApiKey::OffsetDelete => drop(protocol::decode_body::<OffsetDeleteRequest>(request)),
        ApiKey::DescribeLogDirs => drop(protocol::decode_body::<DescribeLogDirsRequest>(request)),
        ApiKey::DescribeCluster => drop(protocol::decode_body::<DescribeClusterRequest>(request)),
        ApiKey::DescribeProducers => {
            drop(protocol::decode_body::<DescribeProducersRequest>(request))
        }
        ApiKey::DescribeTopicPartitions => {
            drop(protocol::decode_body::<DescribeTopicPartitionsRequest>(request))
        }
        ApiKey::AddPartitionsToTxn => {
            drop(protocol::decode_body::<AddPartitionsToTxnRequest>(request))
        }
        ApiKey::AddOffsetsToTxn => drop(protocol::decode_body::<AddOffsetsToTxnRequest>(request)),
        ApiKey::EndTxn => drop(protocol::decode_body::<EndTxnRequest>(request)),
        ApiKey::WriteTxnMarkers => drop(protocol::decode_body::<WriteTxnMarkersRequest>(request)),
        ApiKey::TxnOffsetCommit => drop(protocol::decode_body::<TxnOffsetCommitRequest>(request)),
        ApiKey::DescribeTransactions => {
            drop(protocol::decode_body::<DescribeTransactionsRequest>(request))
        }
        ApiKey::ListTransactions => {
            drop(protocol::decode_body::<ListTransactionsRequest>(request))
        }
        // A served API this target does not decode is a gap in the target: fail loudly.
        other => panic!("{other:?} is served (protocol::SUPPORTED_APIS) but not fuzzed"),
    }
}

/// Each partition's records, as the append validates them.
fn validate_records(body: &ProduceRequest) {
    let batch_bytes_max = fjord_storage::LogConfig::default().batch_bytes_max;
    for topic in &body.topic_data {
        for partition in &topic.partition_data {
            if let Some(records) = partition.records.as_deref() {
                let _ = batch::validate(records, batch_bytes_max, Origin::Client);
            }
        }
    }
}
