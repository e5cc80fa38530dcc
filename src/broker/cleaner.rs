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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_holds_the_shared_rate() {
        let mut pacing = Pacing { rate: 1000, start: Instant::now(), bytes: 0 };
        assert!(pacing.charge(500) > Duration::from_millis(400), "half a second's worth");
        assert!(pacing.charge(500) > Duration::from_millis(900), "a second's worth in all");
    }
}
