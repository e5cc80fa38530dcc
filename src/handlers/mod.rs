//! Request handlers, one file per API (or group of admin APIs). `dispatch` is the API table
//! in code: every served API key appears here and in `protocol::SUPPORTED_APIS`.

mod admin;
mod api_versions;
mod authorized;
mod brokers;
mod configs;
mod delete_records;
mod describe_cluster;
mod describe_configs;
mod describe_log_dirs;
mod describe_producers;
mod describe_topic_partitions;
mod elect_leaders;
pub(crate) mod epochs;
pub(crate) mod errors;
pub(crate) mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod offset_delete;
mod produce;
mod producer_id;
mod reassignments;
mod reply;
pub(crate) mod txn;

use std::rc::Rc;

use kafka_protocol::messages::ApiKey;

use crate::broker::Broker;
use crate::protocol::{self, Request};
use reply::HandlerError;

pub(crate) use delete_records::{delete_records_before, low_watermark_reaching};
pub(crate) use describe_log_dirs::log_dir_partitions;
pub(crate) use describe_producers::partition_producers;
pub(crate) use list_offsets::list_offset;
pub(crate) use produce::{produce_partition, AppendOrder, Pipeline};
pub(crate) use reply::{FetchResponse, Piece, Reply};

/// Routes a parsed request to its handler.
/// Answers one request. `pipeline` is for Produce (see `produce::handle`); other requests
/// drop it when they are done.
pub(crate) async fn dispatch(
    broker: &Rc<Broker>,
    request: Request,
    pipeline: Option<produce::Pipeline>,
) -> Reply {
    let Some((min, max)) = protocol::supported_versions(request.api_key) else {
        return Reply::Close(format!("API {:?} is not served by Fjord", request.api_key));
    };
    if request.api_key == ApiKey::ApiVersions {
        return api_versions::handle(&request, broker.config.transaction_version);
    }
    // With several shards, requests about the cluster as a whole are answered by shard 0.
    if broker.shards.forwards_to_first()
        && !matches!(
            request.api_key,
            ApiKey::Produce | ApiKey::Fetch | ApiKey::ListOffsets | ApiKey::OffsetForLeaderEpoch
        )
    {
        return match broker.shards.forward(request.raw.clone(), request.peer).await {
            crate::broker::shards::FrameReply::Frame(bytes) => Reply::Frame(bytes),
            crate::broker::shards::FrameReply::Nothing => Reply::Nothing,
            crate::broker::shards::FrameReply::Close(reason) => Reply::Close(reason),
        };
    }
    if request.version < min || request.version > max {
        return Reply::Close(format!(
            "{:?} v{} is not supported (Fjord serves v{min}-v{max})",
            request.api_key, request.version
        ));
    }
    let result = match request.api_key {
        ApiKey::Metadata => metadata::handle(broker, &request).await,
        ApiKey::Produce => produce::handle(broker, &request, pipeline).await,
        ApiKey::Fetch => fetch::handle(broker, &request).await,
        ApiKey::ListOffsets => list_offsets::handle(broker, &request).await,
        ApiKey::CreateTopics => admin::create_topics(broker, &request).await,
        ApiKey::DeleteTopics => admin::delete_topics(broker, &request).await,
        ApiKey::DescribeConfigs => describe_configs::describe_configs(broker, &request).await,
        ApiKey::AlterConfigs => configs::alter_configs(broker, &request).await,
        ApiKey::IncrementalAlterConfigs => {
            configs::incremental_alter_configs(broker, &request).await
        }
        ApiKey::CreatePartitions => admin::create_partitions(broker, &request).await,
        ApiKey::DeleteRecords => delete_records::handle(broker, &request).await,
        ApiKey::ElectLeaders => elect_leaders::handle(broker, &request).await,
        ApiKey::AlterPartitionReassignments => reassignments::alter(broker, &request).await,
        ApiKey::ListPartitionReassignments => reassignments::list(broker, &request).await,
        ApiKey::InitProducerId => producer_id::handle(broker, &request).await,
        ApiKey::AddPartitionsToTxn => txn::add_partitions_to_txn(broker, &request).await,
        ApiKey::AddOffsetsToTxn => txn::add_offsets_to_txn(broker, &request).await,
        ApiKey::EndTxn => txn::end_txn(broker, &request).await,
        ApiKey::TxnOffsetCommit => txn::txn_offset_commit(broker, &request).await,
        ApiKey::WriteTxnMarkers => txn::write_txn_markers(broker, &request).await,
        ApiKey::DescribeTransactions => txn::describe_transactions(broker, &request).await,
        ApiKey::ListTransactions => txn::list_transactions(broker, &request).await,
        ApiKey::OffsetForLeaderEpoch => epochs::handle(broker, &request).await,
        ApiKey::FindCoordinator => groups::find_coordinator(broker, &request).await,
        ApiKey::JoinGroup => groups::join_group(broker, &request).await,
        ApiKey::SyncGroup => groups::sync_group(broker, &request).await,
        ApiKey::Heartbeat => groups::heartbeat(broker, &request).await,
        ApiKey::LeaveGroup => groups::leave_group(broker, &request).await,
        ApiKey::OffsetCommit => groups::offset_commit(broker, &request).await,
        ApiKey::OffsetFetch => groups::offset_fetch(broker, &request).await,
        ApiKey::ListGroups => groups::list_groups(broker, &request).await,
        ApiKey::DescribeGroups => groups::describe_groups(broker, &request).await,
        ApiKey::DeleteGroups => groups::delete_groups(broker, &request).await,
        ApiKey::OffsetDelete => offset_delete::handle(broker, &request).await,
        ApiKey::DescribeLogDirs => describe_log_dirs::handle(broker, &request).await,
        ApiKey::DescribeCluster => describe_cluster::handle(broker, &request).await,
        ApiKey::DescribeProducers => describe_producers::handle(broker, &request).await,
        ApiKey::DescribeTopicPartitions => {
            describe_topic_partitions::handle(broker, &request).await
        }
        other => Err(HandlerError::NoHandler(other)),
    };
    match result {
        Ok(reply) => reply,
        Err(error) => {
            Reply::Close(format!("{:?} v{}: {error:#}", request.api_key, request.version))
        }
    }
}
