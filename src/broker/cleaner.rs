//! The log cleaner: `log.cleaner.threads` threads beside the shards that carry out the
//! compaction passes of compacted partitions, so that building a key map and rewriting
//! segments never runs on a shard thread.
//!
//! A pass is planned and committed by the partition's shard (`Partition::clean`: a look at
//! its segments, then the swap, both short and under the partition's log lock); the part
//! in between, reading every closed segment and writing the cleaned ones, is a
//! `CleanPlan` sent here. Each thread runs its own io_uring runtime and takes plans off one
//! bounded queue (`CLEANER_QUEUE_MAX`; a shard whose plan finds it full tries again at a
//! later upkeep). Together the threads read and write at most
//! `log.cleaner.io.max.bytes.per.second` (a shared pacing, charged after each segment) and
//! hold at most `log.cleaner.dedupe.buffer.size` bytes of key maps (each thread's map gets
//! an even share).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fjord_storage::{CleanDone, CleanPlan, RealDisk};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// Plans waiting for a cleaner thread at most.
const CLEANER_QUEUE_MAX: usize = 1024;

/// One pass for a thread, and where its result goes.
struct Job {
    plan: CleanPlan,
    reply: oneshot::Sender<Result<CleanDone, String>>,
}

/// The cleaner threads' shared rate: bytes charged since `start`, at most `rate` a second.
struct Pacing {
    rate: u64,
    start: Instant,
    bytes: u64,
}

impl Pacing {
    /// Charges `bytes`, and answers how long the caller waits so the total stays in rate.
    fn charge(&mut self, bytes: u64) -> Duration {
        self.bytes = self.bytes.saturating_add(bytes);
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        due.saturating_sub(self.start.elapsed())
    }
}

/// The handle shards send plans through.
pub struct Cleaner {
    jobs: SyncSender<Job>,
    /// Bytes of key map one pass may use.
    map_bytes_max: u64,
}

static CLEANER: OnceLock<Cleaner> = OnceLock::new();

impl Cleaner {
    /// The process's cleaner, started with these settings on first use (one broker per
    /// process: every shard passes the same ones).
    pub fn get(
        threads: usize,
        io_bytes_per_second: Option<u64>,
        dedupe_bytes: u64,
    ) -> &'static Cleaner {
        CLEANER.get_or_init(|| Cleaner::start(threads, io_bytes_per_second, dedupe_bytes))
    }

    fn start(threads: usize, io_bytes_per_second: Option<u64>, dedupe_bytes: u64) -> Cleaner {
        let (jobs, receiver) = sync_channel::<Job>(CLEANER_QUEUE_MAX);
        let receiver = Arc::new(Mutex::new(receiver));
        let pacing = io_bytes_per_second
            .map(|rate| Arc::new(Mutex::new(Pacing { rate, start: Instant::now(), bytes: 0 })));
        for n in 0..threads {
            let receiver = Arc::clone(&receiver);
            let pacing = pacing.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("fjord-cleaner-{n}"))
                .spawn(move || fjord_storage::io::block_on(run(receiver, pacing)));
            if let Err(error) = spawned {
                warn!(%error, thread = n, "cannot start a cleaner thread");
            }
        }
        info!(threads, io_bytes_per_second, dedupe_bytes, "log cleaner started");
        Cleaner { jobs, map_bytes_max: dedupe_bytes / threads.max(1) as u64 }
    }

    /// Bytes of key map one pass may use.
    pub fn map_bytes_max(&self) -> u64 {
        self.map_bytes_max
    }

    /// Carries out `plan` on a cleaner thread; `Err` says why it was not (a full queue, a
    /// failed read or write).
    pub async fn run(&self, plan: CleanPlan) -> Result<CleanDone, String> {
        let (reply, answer) = oneshot::channel();
        match self.jobs.try_send(Job { plan, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(format!("the cleaner's queue is full ({CLEANER_QUEUE_MAX} passes)"))
            }
            Err(TrySendError::Disconnected(_)) => return Err("no cleaner thread runs".into()),
        }
        answer.await.unwrap_or_else(|_| Err("the cleaner thread stopped".into()))
    }
}

/// One cleaner thread: passes one after the other, paced.
async fn run(receiver: Arc<Mutex<Receiver<Job>>>, pacing: Option<Arc<Mutex<Pacing>>>) {
    loop {
        let job = {
            let Ok(receiver) = receiver.lock() else { return };
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let pacing = pacing.clone();
        let paced = async move |bytes: u64| {
            if let Some(pacing) = &pacing {
                let wait = pacing.lock().map(|mut p| p.charge(bytes)).unwrap_or_default();
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let codec = crate::partition::recompress::CleanerCodec;
        let result =
            job.plan.run(&RealDisk, Some(&codec), paced).await.map_err(|error| error.to_string());
        let _ = job.reply.send(result);
    }
}

/// What a compacted partition tells of its cleaning (`fjord topic describe`): the dirty
/// part of its cleanable bytes as last measured, and its last pass that cleaned anything.
///
/// It travels in DescribeLogDirs answers (v2 and later, the flexible ones) as a tagged
/// field of the partition, `CleanerStatus::TAG`, which Kafka's clients skip as they skip
/// every tag they do not know: `version i8 (0) | dirty ppm i32 (-1 unmeasured) |
/// last pass ms i64 (-1 none) | records it removed i64 | bytes after it i64`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanerStatus {
    /// The dirty bytes' share of the cleanable bytes, in millionths.
    pub dirty_ppm: Option<u32>,
    /// When the last pass that cleaned segments was committed (ms since the epoch).
    pub last_pass_ms: Option<i64>,
    /// Records that pass removed.
    pub records_removed: u64,
    /// Bytes of the segments that pass wrote.
    pub bytes_after: u64,
}

impl CleanerStatus {
    /// The tag: far above the ones Kafka's message definitions use (0 to a few).
    pub const TAG: i32 = 0x4a00;
    const VERSION: i8 = 0;
    const ENCODED_LEN: usize = 1 + 4 + 8 + 8 + 8;

    pub fn encode(&self) -> bytes::Bytes {
        let mut out = Vec::with_capacity(Self::ENCODED_LEN);
        out.push(Self::VERSION as u8);
        out.extend_from_slice(&self.dirty_ppm.map_or(-1, |p| p as i32).to_be_bytes());
        out.extend_from_slice(&self.last_pass_ms.unwrap_or(-1).to_be_bytes());
        out.extend_from_slice(&(self.records_removed as i64).to_be_bytes());
        out.extend_from_slice(&(self.bytes_after as i64).to_be_bytes());
        out.into()
    }

    /// The status in `bytes`, or `None` if they are not one this version writes.
    pub fn decode(bytes: &[u8]) -> Option<CleanerStatus> {
        if bytes.len() != Self::ENCODED_LEN || bytes[0] as i8 != Self::VERSION {
            return None;
        }
        let i32_at = |at: usize| i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let i64_at = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        Some(CleanerStatus {
            dirty_ppm: u32::try_from(i32_at(1)).ok(),
            last_pass_ms: Some(i64_at(5)).filter(|ms| *ms >= 0),
            records_removed: u64::try_from(i64_at(13)).unwrap_or(0),
            bytes_after: u64::try_from(i64_at(21)).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_holds_the_shared_rate() {
        let mut pacing = Pacing { rate: 1000, start: Instant::now(), bytes: 0 };
        assert!(pacing.charge(500) > Duration::from_millis(400), "half a second's worth");
        assert!(pacing.charge(500) > Duration::from_millis(900), "a second's worth in all");
    }

    #[test]
    fn a_status_decodes_to_itself_and_a_foreign_tag_to_nothing() {
        let status = CleanerStatus {
            dirty_ppm: Some(250_000),
            last_pass_ms: Some(1_700_000_000_000),
            records_removed: 99_000,
            bytes_after: 123_456,
        };
        assert_eq!(CleanerStatus::decode(&status.encode()), Some(status));
        let unmeasured = CleanerStatus::default();
        assert_eq!(CleanerStatus::decode(&unmeasured.encode()), Some(unmeasured));
        assert_eq!(CleanerStatus::decode(b"\x01short"), None);
        let mut other_version = status.encode().to_vec();
        other_version[0] = 1;
        assert_eq!(CleanerStatus::decode(&other_version), None);
    }
}
