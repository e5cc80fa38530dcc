//! The transactional APIs, case by case, on both brokers: InitProducerId with a
//! transactional id, AddPartitionsToTxn (the client versions and v4's verify_only),
//! AddOffsetsToTxn, TxnOffsetCommit, EndTxn (commit, abort, and the refusals: another
//! producer id, an old epoch, a state that does not match), DescribeTransactions and
//! ListTransactions. Each case uses transactional ids of its own, and waits for a
//! transaction's markers (its state Complete*) before the next request about it, so the
//! answers compared are settled ones on both brokers.

use std::time::{Duration, Instant};

use kafka_protocol::messages::*;

use super::cases::{create, s, topic_name, versions};
use super::session::Session;

const TOPIC: &str = "diff-txn-t";
const GROUP: &str = "diff-txn-g";
/// How long a transaction's markers may take before it counts as completed.
const COMPLETE_MS_MAX: u64 = 10_000;
/// The error code of CONCURRENT_TRANSACTIONS.
const CONCURRENT_TRANSACTIONS: i16 = 51;

pub(super) fn run_all(session: &mut Session) {
    create(session, TOPIC, 2);
    init_producer_id(session);
    add_partitions(session);
    add_offsets_and_commit_them(session);
    end_txn(session);
    verify_only(session);
    transactional_produce(session);
    transactions_v2(session);
    describe_and_list(session);
}

/// A transactional batch of `producer` with first sequence `sequence`.
fn transactional_batch(producer: (i64, i16), sequence: i32) -> Vec<u8> {
    let mut batch = super::cases::three_records();
    fjord_storage::batch::build::set_transactional(&mut batch, producer.0, producer.1);
    fjord_storage::batch::build::set_producer(&mut batch, producer.0, producer.1, sequence);
    batch
}

/// KIP-890 part 1, the leader's check: a transactional batch to a partition not added to
/// the transaction is refused (INVALID_TXN_STATE below Produce v11), one to an added
/// partition taken, a fenced epoch refused.
fn transactional_produce(session: &mut Session) {
    let id = "diff-txn-produce";
    let producer = init(session, id);
    let produce = |partition: i32, who: (i64, i16), sequence: i32| {
        let mut request =
            super::cases::produce_request(TOPIC, partition, transactional_batch(who, sequence));
        request.transactional_id = Some(TransactionalId(s(id)));
        request
    };
    session.exchange(
        "txn produce v9 to a partition not in the transaction",
        ApiKey::Produce,
        9,
        &produce(0, producer, 0),
        |r: &mut ProduceResponse| normalise_produce(r),
    );
    add(session, id, producer, &[0]);
    session.exchange(
        "txn produce v9 to a partition in the transaction",
        ApiKey::Produce,
        9,
        &produce(0, producer, 0),
        |r: &mut ProduceResponse| normalise_produce(r),
    );
    let _: EndTxnResponse =
        session.call(ApiKey::EndTxn, 3, &end_request(id, producer, false)).response("abort");
    wait_completed(session, id);
    init(session, id);
    session.exchange(
        "txn produce v9 with a fenced epoch",
        ApiKey::Produce,
        9,
        &produce(1, producer, 0),
        |r: &mut ProduceResponse| normalise_produce(r),
    );
}

/// Transactions v2 (KIP-890 part 2), as the Java 4 client runs them: Produce v12 adds its
/// partition to the transaction (no AddPartitionsToTxn), TxnOffsetCommit v5 adds the
/// group's (no AddOffsetsToTxn), and EndTxn v5 bumps the epoch and answers it, so a late
/// write of an ended transaction is refused by the partition.
fn transactions_v2(session: &mut Session) {
    let id = "diff-txn-v2";
    let (producer_id, epoch) = init(session, id);
    let produce = |who: (i64, i16), sequence: i32| {
        let mut request =
            super::cases::produce_request(TOPIC, 1, transactional_batch(who, sequence));
        request.transactional_id = Some(TransactionalId(s(id)));
        request
    };
    let end = |epoch: i16, commit: bool| end_request(id, (producer_id, epoch), commit);
    session.exchange(
        "txn v2 produce v12 adds its partition",
        ApiKey::Produce,
        12,
        &produce((producer_id, epoch), 0),
        |r: &mut ProduceResponse| normalise_produce(r),
    );
    let mut describe = DescribeTransactionsRequest::default();
    describe.transactional_ids = vec![TransactionalId(s(id))];
    session.exchange(
        "txn v2 describe the transaction a produce opened",
        ApiKey::DescribeTransactions,
        0,
        &describe,
        |r: &mut DescribeTransactionsResponse| normalise_describe(r),
    );
    session.exchange(
        "txn v2 end_txn v5 commit",
        ApiKey::EndTxn,
        5,
        &end(epoch, true),
        |_: &mut EndTxnResponse| {},
    );
    wait_completed(session, id);
    session.exchange(
        "txn v2 produce v12 late write of the committed transaction",
        ApiKey::Produce,
        12,
        &produce((producer_id, epoch), 1),
        |r: &mut ProduceResponse| normalise_produce(r),
    );
    session.exchange(
        "txn v2 end_txn v5 commit retried",
        ApiKey::EndTxn,
        5,
        &end(epoch, true),
        |_: &mut EndTxnResponse| {},
    );
    let mut partition = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
    partition.partition_index = 1;
    partition.committed_offset = 11;
    partition.committed_leader_epoch = -1;
    let mut topic = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
    topic.name = topic_name(TOPIC);
    topic.partitions = vec![partition];
    let mut commit = TxnOffsetCommitRequest::default();
    commit.transactional_id = TransactionalId(s(id));
    commit.group_id = GroupId(s("diff-txn-v2-g"));
    commit.producer_id = ProducerId(producer_id);
    commit.producer_epoch = epoch + 1;
    commit.generation_id = -1;
    commit.topics = vec![topic];
    session.exchange(
        "txn v2 produce v12 the next transaction",
        ApiKey::Produce,
        12,
        &produce((producer_id, epoch + 1), 0),
        |r: &mut ProduceResponse| normalise_produce(r),
    );
    session.exchange(
        "txn v2 txn_offset_commit v5 adds the group",
        ApiKey::TxnOffsetCommit,
        5,
        &commit,
        |_: &mut TxnOffsetCommitResponse| {},
    );
    session.exchange(
        "txn v2 describe with the offsets partition",
        ApiKey::DescribeTransactions,
        0,
        &describe,
        |r: &mut DescribeTransactionsResponse| normalise_describe(r),
    );
    session.exchange(
        "txn v2 end_txn v5 abort",
        ApiKey::EndTxn,
        5,
        &end(epoch + 1, false),
        |_: &mut EndTxnResponse| {},
    );
    wait_completed(session, id);
    let mut fetch = OffsetFetchRequest::default();
    fetch.group_id = GroupId(s("diff-txn-v2-g"));
    fetch.topics = None;
    session.exchange(
        "txn v2 offset_fetch v7 after an aborted transaction",
        ApiKey::OffsetFetch,
        7,
        &fetch,
        |_: &mut OffsetFetchResponse| {},
    );
    session.exchange(
        "txn v2 produce v12 with the epoch before the abort",
        ApiKey::Produce,
        12,
        &produce((producer_id, epoch + 1), 1),
        |r: &mut ProduceResponse| normalise_produce(r),
    );
}

/// Times and the producer id differ between the brokers.
fn normalise_describe(response: &mut DescribeTransactionsResponse) {
    for state in &mut response.transaction_states {
        state.transaction_start_time_ms = i64::from(state.transaction_start_time_ms >= 0);
        state.producer_id = ProducerId(i64::from(state.producer_id.0 >= 0));
        for topic in &mut state.topics {
            if topic.topic.0.as_str() == "__consumer_offsets" {
                // The brokers' offsets topics have different partition counts.
                topic.partitions = vec![0];
            }
            topic.partitions.sort();
        }
        state.topics.sort_by(|a, b| a.topic.0.cmp(&b.topic.0));
    }
}

/// Offsets and times depend on what each broker's partition held before.
fn normalise_produce(response: &mut ProduceResponse) {
    for topic in &mut response.responses {
        for partition in &mut topic.partition_responses {
            partition.base_offset = i64::from(partition.base_offset >= 0);
            partition.log_start_offset = i64::from(partition.log_start_offset >= 0);
        }
    }
}

/// InitProducerId for `id` (v4); its producer id and epoch. Retried while the
/// coordinator loads.
fn init(session: &mut Session, id: &str) -> (i64, i16) {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = Some(TransactionalId(s(id)));
    request.transaction_timeout_ms = 60_000;
    request.producer_id = ProducerId(-1);
    request.producer_epoch = -1;
    let deadline = Instant::now() + Duration::from_millis(COMPLETE_MS_MAX);
    loop {
        let response: InitProducerIdResponse =
            session.call(ApiKey::InitProducerId, 4, &request).response("init a producer");
        if response.error_code == 0 {
            return (response.producer_id.0, response.producer_epoch);
        }
        assert!(Instant::now() < deadline, "InitProducerId {id}: {response:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn add_request(id: &str, producer: (i64, i16), partitions: &[i32]) -> AddPartitionsToTxnRequest {
    let mut topic = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
    topic.name = topic_name(TOPIC);
    topic.partitions = partitions.to_vec();
    let mut request = AddPartitionsToTxnRequest::default();
    request.v3_and_below_transactional_id = TransactionalId(s(id));
    request.v3_and_below_producer_id = ProducerId(producer.0);
    request.v3_and_below_producer_epoch = producer.1;
    request.v3_and_below_topics = vec![topic];
    request
}

/// Adds partitions (v3) and expects them added.
fn add(session: &mut Session, id: &str, producer: (i64, i16), partitions: &[i32]) {
    // Retried while the id's last end is still being completed (CONCURRENT_TRANSACTIONS).
    let deadline = Instant::now() + Duration::from_millis(COMPLETE_MS_MAX);
    loop {
        let response: AddPartitionsToTxnResponse = session
            .call(ApiKey::AddPartitionsToTxn, 3, &add_request(id, producer, partitions))
            .response("add partitions");
        let errors: Vec<i16> = response
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| &t.results_by_partition)
            .map(|p| p.partition_error_code)
            .collect();
        if errors.iter().all(|e| *e == 0) {
            return;
        }
        let concurrent = errors.iter().all(|e| *e == CONCURRENT_TRANSACTIONS);
        assert!(concurrent && Instant::now() < deadline, "AddPartitionsToTxn {id}: {response:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn end_request(id: &str, producer: (i64, i16), commit: bool) -> EndTxnRequest {
    let mut request = EndTxnRequest::default();
    request.transactional_id = TransactionalId(s(id));
    request.producer_id = ProducerId(producer.0);
    request.producer_epoch = producer.1;
    request.committed = commit;
    request
}

/// Waits until `id`'s transaction is no longer being prepared (its markers are written).
fn wait_completed(session: &mut Session, id: &str) {
    let mut request = DescribeTransactionsRequest::default();
    request.transactional_ids = vec![TransactionalId(s(id))];
    let deadline = Instant::now() + Duration::from_millis(COMPLETE_MS_MAX);
    loop {
        let response: DescribeTransactionsResponse = session
            .call(ApiKey::DescribeTransactions, 0, &request)
            .response("describe a transaction");
        let state = response.transaction_states[0].transaction_state.to_string();
        if !state.starts_with("Prepare") {
            return;
        }
        assert!(Instant::now() < deadline, "{id} still {state}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn init_producer_id(session: &mut Session) {
    for v in versions(ApiKey::InitProducerId) {
        let id = format!("diff-txn-init-v{v}");
        init(session, &id);
        let mut request = InitProducerIdRequest::default();
        request.transactional_id = Some(TransactionalId(s(&id)));
        request.transaction_timeout_ms = 60_000;
        request.producer_id = ProducerId(-1);
        request.producer_epoch = -1;
        session.exchange(
            format!("txn init_producer_id v{v} again"),
            ApiKey::InitProducerId,
            v,
            &request,
            |_: &mut InitProducerIdResponse| {},
        );
        request.transaction_timeout_ms = 0;
        session.exchange(
            format!("txn init_producer_id v{v} zero timeout"),
            ApiKey::InitProducerId,
            v,
            &request,
            |_: &mut InitProducerIdResponse| {},
        );
        request.transaction_timeout_ms = i32::MAX;
        session.exchange(
            format!("txn init_producer_id v{v} timeout above the maximum"),
            ApiKey::InitProducerId,
            v,
            &request,
            |_: &mut InitProducerIdResponse| {},
        );
    }
}

fn add_partitions(session: &mut Session) {
    for v in 0..=3 {
        let id = format!("diff-txn-add-v{v}");
        let producer = init(session, &id);
        let cases: [(&str, (i64, i16), &[i32]); 5] = [
            ("first", producer, &[0, 1]),
            ("again", producer, &[0, 1]),
            ("an old epoch", (producer.0, producer.1 - 1), &[0]),
            ("another producer id", (producer.0 + 1, producer.1), &[0]),
            ("an unknown partition", producer, &[0, 99]),
        ];
        for (label, who, partitions) in cases {
            session.exchange(
                format!("txn add_partitions_to_txn v{v} {label}"),
                ApiKey::AddPartitionsToTxn,
                v,
                &add_request(&id, who, partitions),
                |_: &mut AddPartitionsToTxnResponse| {},
            );
        }
        session.exchange(
            format!("txn add_partitions_to_txn v{v} unknown id"),
            ApiKey::AddPartitionsToTxn,
            v,
            &add_request("diff-txn-nobody", producer, &[0]),
            |_: &mut AddPartitionsToTxnResponse| {},
        );
        let _: EndTxnResponse =
            session.call(ApiKey::EndTxn, 3, &end_request(&id, producer, false)).response("abort");
        wait_completed(session, &id);
    }
}

fn add_offsets_and_commit_them(session: &mut Session) {
    for v in versions(ApiKey::AddOffsetsToTxn) {
        let id = format!("diff-txn-offsets-v{v}");
        let producer = init(session, &id);
        let mut request = AddOffsetsToTxnRequest::default();
        request.transactional_id = TransactionalId(s(&id));
        request.producer_id = ProducerId(producer.0);
        request.producer_epoch = producer.1;
        request.group_id = GroupId(s(GROUP));
        session.exchange(
            format!("txn add_offsets_to_txn v{v}"),
            ApiKey::AddOffsetsToTxn,
            v,
            &request,
            |_: &mut AddOffsetsToTxnResponse| {},
        );
        request.producer_epoch = producer.1 - 1;
        session.exchange(
            format!("txn add_offsets_to_txn v{v} an old epoch"),
            ApiKey::AddOffsetsToTxn,
            v,
            &request,
            |_: &mut AddOffsetsToTxnResponse| {},
        );
        let tv = v.min(*versions(ApiKey::TxnOffsetCommit).end());
        let mut partition = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
        partition.partition_index = 0;
        partition.committed_offset = 7;
        partition.committed_leader_epoch = -1;
        let mut topic = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
        topic.name = topic_name(TOPIC);
        topic.partitions = vec![partition];
        let mut commit = TxnOffsetCommitRequest::default();
        commit.transactional_id = TransactionalId(s(&id));
        commit.group_id = GroupId(s(GROUP));
        commit.producer_id = ProducerId(producer.0);
        commit.producer_epoch = producer.1;
        commit.generation_id = -1;
        commit.topics = vec![topic];
        session.exchange(
            format!("txn txn_offset_commit v{tv}"),
            ApiKey::TxnOffsetCommit,
            tv,
            &commit,
            |_: &mut TxnOffsetCommitResponse| {},
        );
        let _: EndTxnResponse =
            session.call(ApiKey::EndTxn, 3, &end_request(&id, producer, true)).response("commit");
        wait_completed(session, &id);
    }
    // The offsets the transactions committed, as the group's.
    let mut fetch = OffsetFetchRequest::default();
    fetch.group_id = GroupId(s(GROUP));
    fetch.topics = None;
    session.exchange(
        "txn offset_fetch v7 after committed transactions",
        ApiKey::OffsetFetch,
        7,
        &fetch,
        |_: &mut OffsetFetchResponse| {},
    );
}

fn end_txn(session: &mut Session) {
    for v in versions(ApiKey::EndTxn) {
        let id = format!("diff-txn-end-v{v}");
        let producer = init(session, &id);
        let cases: [(&str, (i64, i16), bool); 3] = [
            ("commit with nothing added", producer, true),
            ("another producer id", (producer.0 + 1, producer.1), true),
            // Last: from v5 it ends an empty transaction, whose completion Kafka may still
            // be writing when the next request comes.
            ("abort with nothing added", producer, false),
        ];
        for (label, who, commit) in cases {
            session.exchange(
                format!("txn end_txn v{v} {label}"),
                ApiKey::EndTxn,
                v,
                &end_request(&id, who, commit),
                |_: &mut EndTxnResponse| {},
            );
        }
        // Transactions v2 (EndTxn v5) bump the epoch at every end, an abort with nothing
        // open too; the answer carries the new epoch.
        let bumps = v >= 5;
        let producer = if bumps { (producer.0, producer.1 + 1) } else { producer };
        add(session, &id, producer, &[0]);
        session.exchange(
            format!("txn end_txn v{v} an old epoch"),
            ApiKey::EndTxn,
            v,
            &end_request(&id, (producer.0, producer.1 - 1), true),
            |_: &mut EndTxnResponse| {},
        );
        session.exchange(
            format!("txn end_txn v{v} commit"),
            ApiKey::EndTxn,
            v,
            &end_request(&id, producer, true),
            |_: &mut EndTxnResponse| {},
        );
        wait_completed(session, &id);
        for (label, commit) in [("commit again", true), ("abort after a commit", false)] {
            session.exchange(
                format!("txn end_txn v{v} {label}"),
                ApiKey::EndTxn,
                v,
                &end_request(&id, producer, commit),
                |_: &mut EndTxnResponse| {},
            );
        }
        if bumps {
            // With the epoch the commit answered: not a retry, so a second commit is refused
            // and an abort ends an empty transaction (bumping again).
            let bumped = (producer.0, producer.1 + 1);
            for (label, commit) in
                [("commit with the new epoch", true), ("abort with the new epoch", false)]
            {
                session.exchange(
                    format!("txn end_txn v{v} {label}"),
                    ApiKey::EndTxn,
                    v,
                    &end_request(&id, bumped, commit),
                    |_: &mut EndTxnResponse| {},
                );
            }
        }
    }
}

fn verify_only(session: &mut Session) {
    let id = "diff-txn-verify";
    let producer = init(session, id);
    add(session, id, producer, &[0]);
    let mut topic = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
    topic.name = topic_name(TOPIC);
    topic.partitions = vec![0, 1];
    let mut txn = add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default();
    txn.transactional_id = TransactionalId(s(id));
    txn.producer_id = ProducerId(producer.0);
    txn.producer_epoch = producer.1;
    txn.verify_only = true;
    txn.topics = vec![topic];
    let mut request = AddPartitionsToTxnRequest::default();
    request.transactions = vec![txn.clone()];
    session.exchange(
        "txn add_partitions_to_txn v4 verify_only",
        ApiKey::AddPartitionsToTxn,
        4,
        &request,
        |_: &mut AddPartitionsToTxnResponse| {},
    );
    txn.producer_epoch = producer.1 - 1;
    request.transactions = vec![txn];
    session.exchange(
        "txn add_partitions_to_txn v4 verify_only an old epoch",
        ApiKey::AddPartitionsToTxn,
        4,
        &request,
        |_: &mut AddPartitionsToTxnResponse| {},
    );
}

fn describe_and_list(session: &mut Session) {
    let open = "diff-txn-open";
    let producer = init(session, open);
    add(session, open, producer, &[1, 0]);
    let mut describe = DescribeTransactionsRequest::default();
    describe.transactional_ids = vec![
        TransactionalId(s(open)),
        TransactionalId(s("diff-txn-end-v0")),
        TransactionalId(s("diff-txn-nobody")),
    ];
    session.exchange(
        "txn describe_transactions v0",
        ApiKey::DescribeTransactions,
        0,
        &describe,
        |r: &mut DescribeTransactionsResponse| {
            for state in &mut r.transaction_states {
                // When it started and its epoch depend on each broker's clock and history.
                state.transaction_start_time_ms = i64::from(state.transaction_start_time_ms > 0);
            }
        },
    );
    for v in versions(ApiKey::ListTransactions) {
        for (label, states) in [
            ("all", vec![]),
            ("ongoing", vec![s("Ongoing")]),
            ("unknown state", vec![s("Sleeping")]),
        ] {
            let mut request = ListTransactionsRequest::default();
            request.state_filters = states;
            request.duration_filter = -1;
            session.exchange(
                format!("txn list_transactions v{v} {label}"),
                ApiKey::ListTransactions,
                v,
                &request,
                |r: &mut ListTransactionsResponse| {
                    // Only this suite's ids: a broker may list others of earlier runs.
                    r.transaction_states.retain(|t| t.transactional_id.0.starts_with("diff-txn"));
                    r.transaction_states
                        .sort_by(|a, b| a.transactional_id.0.cmp(&b.transactional_id.0));
                },
            );
        }
    }
    let _: EndTxnResponse =
        session.call(ApiKey::EndTxn, 3, &end_request(open, producer, false)).response("abort");
    wait_completed(session, open);
}
