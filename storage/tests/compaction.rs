//! Compaction (`PartitionLog::clean`) against a model, on the simulated disk and clock:
//! seeded schedules of keyed appends (tombstones among them), rolls, clock moves, cleaning
//! passes and reopens; and a power cut at every sync of a pass, after which the log must be
//! exactly the log before the pass or exactly the log after it.
//!
//! The model is every record appended, by offset. What a cleaned log must hold:
//! - only records the model has, at their offsets, byte for byte the same key and value,
//!   in increasing offsets;
//! - for every key, its last record, unless that is a tombstone (which may go once old);
//! - every record at or past the first uncleanable offset (the active segment's base).

use std::collections::BTreeMap;
use std::path::Path;

use fjord_storage::batch::{build, read_varint, read_varlong, BatchHeader, BATCH_HEADER_BYTES};
use fjord_storage::io::block_on;
use fjord_storage::sim::{Faults, Rng, SimClock, SimDisk};
use fjord_storage::{CleanOptions, Clock, FlushPolicy, LogConfig, PartitionLog};

use crate::common::*;

type SimLog = PartitionLog<SimDisk, SimClock>;

const DIR: &str = "/sim/compacted-0";
/// Schedules of the model test.
const SCHEDULES: u64 = 60;
/// Operations per schedule.
const OPS_PER_SCHEDULE: u64 = 120;
/// Distinct keys: few, so that cleaning removes most records.
const KEYS: u64 = 12;
/// `delete.retention.ms` of the passes.
const DELETE_RETENTION_MS: u64 = 10_000;

/// A record as read back: offset, key, value (`None`: a tombstone).
type Record = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        retention_ms: None,
        flush: FlushPolicy::Never,
        ..LogConfig::default()
    }
}

fn options(clean_below: i64, map_bytes_max: u64) -> CleanOptions {
    CleanOptions {
        clean_below,
        map_bytes_max,
        min_compaction_lag_ms: 0,
        delete_retention_ms: DELETE_RETENTION_MS,
    }
}

/// Every record of the log, from its start, with the batches' offsets checked.
async fn read_records(log: &mut SimLog) -> Vec<Record> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    while next < end {
        let read = log.read(next, 64 * 1024).await.expect("read");
        let bytes = read.read_bytes().await.expect("read bytes");
        assert!(!bytes.is_empty(), "a read at {next} below the end {end} returned nothing");
        let mut at = 0;
        while let Some(header) = bytes.get(at..).and_then(BatchHeader::view) {
            let size = header.size() as usize;
            let batch = &bytes[at..at + size];
            let base = header.base_offset.get();
            assert!(header.last_offset() >= next, "batch at {base} goes back before {next}");
            out.extend(parse_records(batch).into_iter().filter(|(offset, _, _)| *offset >= next));
            next = header.last_offset() + 1;
            at += size;
        }
    }
    for pair in out.windows(2) {
        assert!(pair[0].0 < pair[1].0, "offsets out of order: {} then {}", pair[0].0, pair[1].0);
    }
    out
}

fn parse_records(batch: &[u8]) -> Vec<Record> {
    let header = BatchHeader::view(batch).expect("header");
    assert_eq!(header.attributes.get() & 0x07, 0, "the test writes uncompressed batches");
    let base = header.base_offset.get();
    let body = &batch[BATCH_HEADER_BYTES..];
    let mut records = Vec::new();
    let mut position = 0;
    while position < body.len() {
        let (length, used) = read_varint(&body[position..]).expect("length");
        let record = &body[position + used..position + used + length as usize];
        let mut at = 1;
        let (_ts, used) = read_varlong(&record[at..]).expect("timestamp");
        at += used;
        let (delta, used) = read_varint(&record[at..]).expect("offset delta");
        at += used;
        let bytes = |at: &mut usize| {
            let (len, used) = read_varint(&record[*at..]).expect("length");
            *at += used;
            (len >= 0).then(|| {
                let field = record[*at..*at + len as usize].to_vec();
                *at += len as usize;
                field
            })
        };
        let key = bytes(&mut at);
        let value = bytes(&mut at);
        records.push((base + i64::from(delta), key, value));
        position += used + length as usize;
    }
    assert_eq!(records.len(), header.records_count.get() as usize, "record count of {base}");
    records
}

/// Appends one batch of 1-3 keyed records (a tombstone now and then); the model learns them.
async fn append(
    log: &mut SimLog,
    rng: &mut Rng,
    clock: &SimClock,
    model: &mut BTreeMap<i64, Record>,
) {
    let count = 1 + rng.below(3) as usize;
    let owned: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..count)
        .map(|_| {
            let key = format!("key-{}", rng.below(KEYS)).into_bytes();
            let value =
                (rng.below(8) != 0).then(|| format!("value-{}", rng.below(1_000_000)).into_bytes());
            (key, value)
        })
        .collect();
    let records: Vec<build::Record<'_>> = owned
        .iter()
        .map(|(key, value)| build::Record {
            key: Some(key),
            value: value.as_deref(),
            timestamp_delta: 0,
        })
        .collect();
    let batch = build::batch(&records, clock.now_ms());
    let info = log.append(buf(&batch), 0).await.expect("append");
    for (i, (key, value)) in owned.into_iter().enumerate() {
        let offset = info.base_offset + i as i64;
        model.insert(offset, (offset, Some(key), value));
    }
}

/// What a cleaned log must hold, against the model (module documentation).
fn check(records: &[Record], model: &BTreeMap<i64, Record>, uncleanable: i64, context: &str) {
    for record in records {
        assert_eq!(
            model.get(&record.0),
            Some(record),
            "{context}: a record the model does not have"
        );
    }
    let present: std::collections::BTreeSet<i64> = records.iter().map(|r| r.0).collect();
    let mut last: BTreeMap<&[u8], &Record> = BTreeMap::new();
    for record in model.values() {
        last.insert(record.1.as_deref().expect("keyed"), record);
        if record.0 >= uncleanable {
            assert!(
                present.contains(&record.0),
                "{context}: uncleanable offset {} is gone",
                record.0
            );
        }
    }
    for (key, record) in last {
        if record.2.is_some() {
            assert!(
                present.contains(&record.0),
                "{context}: the last record of {} (offset {}) is gone",
                String::from_utf8_lossy(key),
                record.0
            );
        }
    }
}

/// What a pass over everything below `end` would do now.
async fn plan_of(log: &mut SimLog, end: i64) -> fjord_storage::CleanPlan {
    log.plan_clean(&options(end, 1 << 20)).await.expect("plan").expect("closed segments")
}

async fn open(disk: &SimDisk, clock: &SimClock) -> SimLog {
    PartitionLog::open_on(disk.clone(), clock.clone(), Path::new(DIR), config())
        .await
        .expect("open")
}

#[test]
fn cleaning_keeps_every_keys_last_record_and_removes_the_rest_across_reopens() {
    let seed = fjord_storage::sim::seed("compaction");
    for schedule in 0..SCHEDULES {
        block_on(async {
            let mut rng = Rng::new(seed + schedule);
            let disk = SimDisk::new(seed + schedule, Faults::none());
            let clock = SimClock::new(1_000_000);
            let mut log = open(&disk, &clock).await;
            let mut model = BTreeMap::new();
            let mut removed_any = false;
            for op in 0..OPS_PER_SCHEDULE {
                match rng.below(20) {
                    0..=13 => append(&mut log, &mut rng, &clock, &mut model).await,
                    14 => log.roll().await.expect("roll"),
                    15 => clock.advance(rng.below(2 * DELETE_RETENTION_MS)),
                    16 => {
                        log.close().await.expect("close");
                        log = open(&disk, &clock).await;
                    }
                    _ => {
                        // A small map now and then: the pass stops where it is full.
                        let map = if rng.below(3) == 0 { 600 } else { 1 << 20 };
                        let end = log.log_end_offset();
                        let outcome = log.clean(&options(end, map)).await.expect("clean");
                        removed_any |= outcome.records_removed > 0;
                        let records = read_records(&mut log).await;
                        let uncleanable = log.segments().last().expect("active").base_offset;
                        let context = format!("seed {} op {op}", seed + schedule);
                        check(&records, &model, uncleanable, &context);
                    }
                }
            }
            log.roll().await.expect("roll");
            let end = log.log_end_offset();
            log.clean(&options(end, 1 << 20)).await.expect("clean");
            log.close().await.expect("close");
            let mut log = open(&disk, &clock).await;
            let records = read_records(&mut log).await;
            let context = format!("seed {} at the end", seed + schedule);
            check(&records, &model, log.log_end_offset(), &context);
            // After a full pass, each key has at most one record before the active segment.
            let mut seen = std::collections::HashSet::new();
            for record in &records {
                assert!(seen.insert(record.1.clone()), "{context}: key {:?} twice", record.1);
            }
            assert!(removed_any || model.len() < 20, "{context}: no pass removed anything");
            // Past `delete.retention.ms`, a pass over the clean part removes the tombstones;
            // the plan says such a pass is due though nothing is dirty (KIP-534), and only
            // then (after the open, not known: due once).
            let end = log.log_end_offset();
            assert!(
                plan_of(&mut log, end).await.tombstones_due(),
                "{context}: not known after an open"
            );
            log.clean(&options(end, 1 << 20)).await.expect("clean");
            let tombstones = read_records(&mut log).await.iter().filter(|r| r.2.is_none()).count();
            assert!(
                !plan_of(&mut log, end).await.tombstones_due(),
                "{context}: due before their time"
            );
            clock.advance(2 * DELETE_RETENTION_MS);
            assert_eq!(
                plan_of(&mut log, end).await.tombstones_due(),
                tombstones > 0,
                "{context}: due"
            );
            assert_eq!(
                plan_of(&mut log, end).await.dirty_bytes(),
                0,
                "{context}: nothing is dirty"
            );
            log.clean(&options(end, 1 << 20)).await.expect("clean");
            assert!(
                !plan_of(&mut log, end).await.tombstones_due(),
                "{context}: due with none left"
            );
            let records = read_records(&mut log).await;
            check(&records, &model, log.log_end_offset(), &context);
            let tombstones = records.iter().filter(|r| r.2.is_none()).count();
            assert_eq!(tombstones, 0, "{context}: tombstones left past their retention");
        });
    }
}

/// The same log on a fresh disk for the same seed: 60 batches of repeated keys in several
/// closed segments (rolled every 5 batches as well, so that small ones are merged),
/// flushed, and an empty active segment.
async fn build(seed: u64) -> (SimDisk, SimClock, SimLog, BTreeMap<i64, Record>) {
    let disk = SimDisk::new(seed, Faults::none());
    let clock = SimClock::new(1_000_000);
    let mut log = open(&disk, &clock).await;
    let mut rng = Rng::new(seed);
    let mut model = BTreeMap::new();
    for i in 0..60 {
        append(&mut log, &mut rng, &clock, &mut model).await;
        if i % 5 == 4 {
            log.roll().await.expect("roll");
        }
    }
    log.roll().await.expect("roll");
    log.flush().await.expect("flush");
    (disk, clock, log, model)
}

#[test]
fn a_power_cut_at_any_sync_of_a_pass_leaves_the_log_before_or_after_it() {
    block_on(async {
        let seed = fjord_storage::sim::seed("compaction");
        let (disk, _, mut log, _) = build(seed).await;
        let before = read_records(&mut log).await;
        let end = log.log_end_offset();
        let base_syncs = disk.stats().syncs;
        // A read that started before the pass finishes on the old segments.
        let start = log.log_start_offset();
        let started = log.read(start, 1 << 20).await.expect("read");
        let old_bytes = started.read_bytes().await.expect("read bytes");
        let segments_before = log.segments().len();
        log.clean(&options(end, 1 << 20)).await.expect("clean");
        assert!(
            log.segments().len() < segments_before,
            "the pass merged no segments ({segments_before} before): the merge is not checked"
        );
        assert_eq!(
            started.read_bytes().await.expect("read the old segments after the swap"),
            old_bytes,
            "a read begun before the swap sees the old segments"
        );
        let after = read_records(&mut log).await;
        assert!(after.len() < before.len(), "the pass removed nothing: the test checks nothing");
        let syncs = disk.stats().syncs - base_syncs;
        assert!(syncs >= 4, "a pass with a swap syncs several times, saw {syncs}");
        for k in 0..syncs {
            let (disk, clock, mut log, _) = build(seed).await;
            disk.power_off_at_sync(k);
            let _ = log.clean(&options(end, 1 << 20)).await;
            drop(log);
            disk.crash();
            let mut reopened = open(&disk, &clock).await;
            let records = read_records(&mut reopened).await;
            assert!(
                records == before || records == after,
                "power cut at sync {k}: the log is neither the one before the pass ({} records) \
                 nor the one after it ({}): {} records",
                before.len(),
                after.len(),
                records.len()
            );
            // And a second open (a crash during recovery's roll-forward) agrees.
            drop(reopened);
            disk.crash();
            let mut again = open(&disk, &clock).await;
            assert_eq!(
                read_records(&mut again).await,
                records,
                "power cut at sync {k}: second open"
            );
        }
    });
}

#[test]
fn cleaning_on_the_machines_disk_swaps_the_segments_and_survives_a_reopen() {
    let dir = TempDir::new("compaction");
    block_on(async {
        let clock = SimClock::new(1_000_000);
        let mut log =
            PartitionLog::open_on(fjord_storage::RealDisk, clock.clone(), dir.path(), config())
                .await
                .expect("open");
        let mut model = BTreeMap::new();
        let mut rng = Rng::new(5);
        for _ in 0..80 {
            let count = 1 + rng.below(3) as usize;
            let owned: Vec<(Vec<u8>, Vec<u8>)> = (0..count)
                .map(|_| {
                    let key = format!("key-{}", rng.below(KEYS)).into_bytes();
                    (key, format!("value-{}", rng.below(1_000_000)).into_bytes())
                })
                .collect();
            let records: Vec<build::Record<'_>> = owned
                .iter()
                .map(|(k, v)| build::Record { key: Some(k), value: Some(v), timestamp_delta: 0 })
                .collect();
            let info = log.append(buf(&build::batch(&records, clock.now_ms())), 0).await.unwrap();
            for (i, (k, v)) in owned.into_iter().enumerate() {
                let offset = info.base_offset + i as i64;
                model.insert(offset, (offset, Some(k), Some(v)));
            }
        }
        log.roll().await.unwrap();
        let size_before: u64 = log.segments().iter().map(|s| s.size).sum();
        let end = log.log_end_offset();
        let outcome = log.clean(&options(end, 1 << 20)).await.expect("clean");
        assert!(outcome.bytes_after < outcome.bytes_before, "{outcome:?}");
        let size_after: u64 = log.segments().iter().map(|s| s.size).sum();
        assert!(size_after < size_before, "{size_after} of {size_before} bytes");
        log.close().await.unwrap();
        assert!(
            std::fs::read_dir(dir.path().join("cleaning")).unwrap().next().is_none(),
            "nothing left under cleaning/"
        );
        let mut log =
            PartitionLog::open_on(fjord_storage::RealDisk, clock.clone(), dir.path(), config())
                .await
                .expect("reopen");
        let mut out = Vec::new();
        let mut next = log.log_start_offset();
        while next < log.log_end_offset() {
            let bytes = log.read(next, 1 << 20).await.unwrap().read_bytes().await.unwrap();
            for (base, _, batch) in split_batches(&bytes) {
                let header = BatchHeader::view(&batch).unwrap();
                out.extend(parse_records(&batch).into_iter().filter(|r| r.0 >= next));
                next = header.last_offset() + 1;
                let _ = base;
            }
        }
        check(&out, &model, log.log_end_offset(), "the machine's disk");
        assert_eq!(out.len() as u64, KEYS, "one record per key");
    });
}

#[test]
fn a_pass_whose_segments_changed_meanwhile_is_dropped_or_swaps_only_what_is_left() {
    block_on(async {
        let seed = fjord_storage::sim::seed("compaction-changed");
        for change in ["truncation", "retention"] {
            let (disk, _clock, mut log, mut model) = build(seed).await;
            let end = log.log_end_offset();
            let plan = log.plan_clean(&options(end, 1 << 20)).await.expect("plan").expect("a plan");
            let done = plan.run(&disk, None, async |_| {}).await.expect("run");
            let segments = log.segments();
            let cut = segments[segments.len() / 2].base_offset;
            match change {
                "truncation" => {
                    log.truncate_to(cut).await.expect("truncate");
                    model.retain(|offset, _| *offset < cut);
                }
                _ => {
                    log.advance_log_start(cut).await.expect("advance the log start");
                    model.retain(|offset, _| *offset >= cut);
                }
            }
            let before = read_records(&mut log).await;
            let outcome = log.commit_clean(done).await.expect("commit");
            let after = read_records(&mut log).await;
            match change {
                "truncation" => {
                    assert!(outcome.cleaned_segments.is_empty(), "{change}: {outcome:?}");
                    assert_eq!(after, before, "{change}: the log is untouched");
                }
                _ => {
                    assert!(after.len() < before.len(), "{change}: what is left was cleaned");
                    check(&after, &model, log.log_end_offset(), change);
                }
            }
            let names = fjord_storage::Disk::list_dir(&disk, &Path::new(DIR).join("cleaning"))
                .expect("list cleaning/");
            assert!(names.is_empty(), "{change}: files left under cleaning/: {names:?}");
        }
    });
}

/// A tombstone goes once its own batch is older than `delete.retention.ms`, even when each
/// pass merges newer segments into the cleaned one that holds it (so that segment's newest
/// record stays young).
#[test]
fn a_tombstone_goes_while_newer_segments_keep_merging_into_its_segment() {
    block_on(async {
        let disk = SimDisk::new(7, Faults::none());
        let clock = SimClock::new(1_000_000);
        let mut log = open(&disk, &clock).await;
        let put = |key: &str, value: Option<&[u8]>| {
            let record = build::Record { key: Some(key.as_bytes()), value, timestamp_delta: 0 };
            build::batch(&[record], clock.now_ms())
        };
        log.append(buf(&put("gone", Some(b"v"))), 0).await.expect("append");
        log.append(buf(&put("gone", None)), 0).await.expect("append");
        log.roll().await.expect("roll");
        // Every tenth of the retention, one more small segment; each pass merges it in.
        for round in 0..30 {
            clock.advance(DELETE_RETENTION_MS / 10);
            let key = format!("fresh-{round}");
            log.append(buf(&put(&key, Some(b"v"))), 0).await.expect("append");
            log.roll().await.expect("roll");
            let end = log.log_end_offset();
            log.clean(&options(end, 1 << 20)).await.expect("clean");
        }
        let records = read_records(&mut log).await;
        assert!(
            log.segments().len() <= 3,
            "the small segments were merged: {}",
            log.segments().len()
        );
        let gone: Vec<_> =
            records.iter().filter(|r| r.1.as_deref() == Some(b"gone".as_slice())).collect();
        assert!(gone.is_empty(), "the tombstone is still there three retentions later: {gone:?}");
    });
}

/// A transactional record is kept whole (the cleaner does not know whether its transaction
/// committed), so a later tombstone of its key stays past `delete.retention.ms`: dropping
/// it would bring the transactional value back. A key without transactional records loses
/// its tombstone as usual. And a segment with aborted transactions filed under it keeps its
/// `.txnindex` through the pass.
#[test]
fn a_tombstone_stays_while_a_transactional_record_of_its_key_is_kept() {
    block_on(async {
        let disk = SimDisk::new(11, Faults::none());
        let clock = SimClock::new(1_000_000);
        let mut log = open(&disk, &clock).await;
        let put = |key: &str, value: Option<&[u8]>| {
            let record = build::Record { key: Some(key.as_bytes()), value, timestamp_delta: 0 };
            build::batch(&[record], clock.now_ms())
        };
        let mut transactional = put("held", Some(b"in a transaction"));
        build::set_transactional(&mut transactional, 7, 0);
        let first = log.append(buf(&transactional), 0).await.expect("append").base_offset;
        let marker = build::control_batch(7, 0, fjord_storage::batch::CONTROL_ABORT, 0, 1);
        let marker_at = log.append(buf(&marker), 0).await.expect("append marker").base_offset;
        let aborted = fjord_storage::txn_index::AbortedTxn {
            producer_id: 7,
            first_offset: first,
            last_offset: marker_at,
            last_stable_offset: first,
        };
        log.append_aborted(aborted).await.expect("file the abort");
        log.append(buf(&put("held", None)), 0).await.expect("append");
        log.append(buf(&put("plain", Some(b"v"))), 0).await.expect("append");
        log.append(buf(&put("plain", None)), 0).await.expect("append");
        log.roll().await.expect("roll");
        for _ in 0..3 {
            clock.advance(DELETE_RETENTION_MS);
            log.append(buf(&put("other", Some(b"v"))), 0).await.expect("append");
            log.roll().await.expect("roll");
            let end = log.log_end_offset();
            log.clean(&options(end, 1 << 20)).await.expect("clean");
        }
        let records = read_records(&mut log).await;
        let of = |key: &[u8]| -> Vec<Option<Vec<u8>>> {
            records.iter().filter(|r| r.1.as_deref() == Some(key)).map(|r| r.2.clone()).collect()
        };
        assert_eq!(
            of(b"held"),
            vec![Some(b"in a transaction".to_vec()), None],
            "the transactional record and the tombstone after it both stay"
        );
        assert!(of(b"plain").is_empty(), "a plain key's tombstone goes: {:?}", of(b"plain"));
        assert_eq!(log.aborted_between(0, i64::MAX), vec![aborted], "the abort is still filed");
        drop(log);
        let mut log = open(&disk, &clock).await;
        assert_eq!(log.aborted_between(0, i64::MAX), vec![aborted], "and read back on open");
        log.truncate_to(marker_at).await.expect("truncate");
        assert!(log.aborted_between(0, i64::MAX).is_empty(), "a cut marker takes its entry");
    });
}
