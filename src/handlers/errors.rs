//! Kafka error codes for Fjord's errors, chosen in one place with exhaustive matches, so a
//! new error variant cannot reach a client without a deliberate code.

use fjord_storage::{BatchError, StorageError};
use kafka_protocol::ResponseError;

use crate::broker::topic::TopicError;
use crate::partition::AppendError;

/// The error code of an outcome: 0 for none.
pub(crate) fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

/// The Kafka error for a storage error.
pub(crate) fn storage_error_code(error: &StorageError) -> ResponseError {
    match error {
        StorageError::InvalidBatch { source, .. } => batch_error_code(source),
        StorageError::AppendTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::EmptyAppend => ResponseError::CorruptMessage,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Corrupt { .. } => ResponseError::KafkaStorageError,
        StorageError::Poisoned { .. }
        | StorageError::CheckFailed { .. }
        | StorageError::GroupWriteFailed { .. }
        | StorageError::Lost { .. }
        | StorageError::Full { .. } => ResponseError::KafkaStorageError,
        // A partition closes only while it is deleted or the broker stops: it is leaving
        // this broker, and clients look for it elsewhere.
        StorageError::Closed { .. } => ResponseError::NotLeaderOrFollower,
        StorageError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        StorageError::Io(_) => ResponseError::KafkaStorageError,
    }
}

/// The Kafka error for a refused topic creation, deletion or change.
pub(crate) fn topic_error_code(error: &TopicError) -> ResponseError {
    match error {
        TopicError::InvalidName { .. } | TopicError::Internal { .. } => {
            ResponseError::InvalidTopicException
        }
        TopicError::InvalidPartitions { .. }
        | TopicError::SamePartitionCount { .. }
        | TopicError::FewerPartitions { .. } => ResponseError::InvalidPartitions,
        TopicError::InvalidReplicaAssignment { .. } => ResponseError::InvalidReplicaAssignment,
        TopicError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        TopicError::InvalidReplicationFactor { .. } => ResponseError::InvalidReplicationFactor,
        TopicError::AlreadyExists { .. } => ResponseError::TopicAlreadyExists,
        TopicError::Unknown { .. } => ResponseError::UnknownTopicOrPartition,
        TopicError::TooMany { .. } => ResponseError::PolicyViolation,
        TopicError::Storage { .. } => ResponseError::KafkaStorageError,
        TopicError::State { .. } => ResponseError::UnknownServerError,
    }
}

/// The Kafka error for a refused batch.
pub(crate) fn batch_error_code(error: &BatchError) -> ResponseError {
    match error {
        BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
        BatchError::WrongMagic { .. } => ResponseError::UnsupportedForMessageFormat,
        BatchError::UnknownCompression { .. } => ResponseError::UnsupportedCompressionType,
        BatchError::Truncated { .. }
        | BatchError::LengthTooSmall { .. }
        | BatchError::ChecksumMismatch { .. }
        | BatchError::InvalidRecordCount { .. }
        | BatchError::CountDeltaMismatch { .. }
        | BatchError::CountBytesMismatch { .. }
        | BatchError::MalformedRecords { .. } => ResponseError::CorruptMessage,
        BatchError::UnexpectedBaseOffset { .. } => ResponseError::InvalidRecord,
        BatchError::TimestampOutOfRange { .. } => ResponseError::InvalidTimestamp,
    }
}

/// The Kafka error for a refused append.
pub(crate) fn append_error_code(error: &AppendError) -> ResponseError {
    match error {
        AppendError::Storage(error) => storage_error_code(error),
        AppendError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
        AppendError::StaleEpoch { .. } => ResponseError::InvalidProducerEpoch,
        AppendError::NotLeader => ResponseError::NotLeaderOrFollower,
        // The write these waited on did not happen (or its outcome is unknown): a storage
        // error, which producers retry.
        AppendError::Abandoned | AppendError::DuplicateOfFailed => ResponseError::KafkaStorageError,
        AppendError::TxnNotVerified => ResponseError::InvalidTxnState,
    }
}
