//! Opening a partition log: listing its segments, removing what a crash left behind
//! (orphaned files, segments below the log start or after a damaged one), opening each
//! segment (trusted below the recovery checkpoint or after a clean stop, scanned from it
//! otherwise) and recording in the checkpoint what was checked.
//!
//! Invariants on return: at least one segment; the segments are contiguous (each starts
//! where its predecessor ends); `log_start_offset <= log_end_offset`; everything on disk
//! is durable (`durable_offset` is the log end).

use std::path::Path;

use tracing::{info, warn};

use crate::checkpoint::Checkpoint;
use crate::clock::{Clock, SystemClock};
use crate::config::LogConfig;
use crate::disk::{Disk, RealDisk};
use crate::error::Result;
use crate::recovery::{self, ScanOutcome};
use crate::segment::{segment_path, Segment};

use super::PartitionLog;

/// How the last open went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub clean_shutdown: bool,
    /// Segments whose log was scanned batch by batch, with what each scan found.
    pub scanned: Vec<(i64, ScanOutcome)>,
    /// Segments removed because they followed a corrupt segment or lay below the log start.
    pub removed_segments: Vec<i64>,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir` on the machine's disk and clock, recovering it if
    /// the last stop was not clean.
    pub async fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog> {
        PartitionLog::open_on(RealDisk, SystemClock, dir, config).await
    }
}

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// Opens (or creates) the log in `dir` on `disk`, reading the time from `clock`,
    /// recovering it if the last stop was not clean.
    pub async fn open_on(disk: D, clock: C, dir: &Path, config: LogConfig) -> Result<Self> {
        config.validate()?;
        disk.create_dir_all(dir)?;
        let names = disk.list_dir(dir)?;
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|name| name.strip_suffix(".log"))
            .filter(|stem| stem.len() == 20)
            .filter_map(|stem| stem.parse::<i64>().ok())
            .collect();
        bases.sort_unstable();
        recovery::remove_orphans(&disk, dir, &names, &bases).await?;

        let checkpoint = Checkpoint::read(&disk, dir).await?;
        let clean = checkpoint.is_some_and(|c| c.clean_shutdown);
        let recovery_offset = checkpoint.map_or(i64::MIN, |c| c.recovery_offset);
        let mut log_start_offset =
            checkpoint.map_or(0, |c| c.log_start_offset).max(bases.first().copied().unwrap_or(0));
        let mut report = OpenReport { clean_shutdown: clean, ..OpenReport::default() };

        // A crash during retention can leave segments that lie wholly below the log start.
        while bases.len() > 1 && bases[1] <= log_start_offset {
            let base = bases.remove(0);
            warn!(dir = %dir.display(), base, log_start_offset, "removing segment below the log start");
            for extension in ["log", "index", "timeindex"] {
                disk.remove_file(&segment_path(dir, base, extension)).await?;
            }
            report.removed_segments.push(base);
        }

        let now = clock.now_ms();
        let mut segments: Vec<Segment<D>> = Vec::with_capacity(bases.len().max(1));
        // The segment holding the recovery offset and all after it are scanned when unclean.
        let first_scanned = bases.iter().rposition(|&base| base <= recovery_offset).unwrap_or(0);
        let mut cut_at: Option<usize> = None;
        for (i, &base) in bases.iter().enumerate() {
            let mut segment =
                Segment::open_files(&disk, dir, base, false, config.index_interval_bytes, now)
                    .await?;
            let outcome = if clean || i < first_scanned {
                recovery::open_trusted(&mut segment).await?
            } else {
                Some(recovery::scan_segment(&mut segment, true).await?)
            };
            if let Some(outcome) = outcome {
                let damaged = outcome.invalid_bytes > 0;
                report.scanned.push((base, outcome));
                if damaged && i + 1 < bases.len() {
                    cut_at = Some(i + 1);
                }
            }
            // Each segment starts where its predecessor ends. (A segment past a gap is one a
            // crash brought back after a truncation had cut its predecessor.)
            if let Some(previous) = segments.last() {
                if segment.base_offset() != previous.next_offset() {
                    warn!(dir = %dir.display(), base, previous_next = previous.next_offset(), "segment does not follow its predecessor");
                    cut_at = Some(i);
                }
            }
            if cut_at == Some(i) {
                break;
            }
            segments.push(segment);
            if cut_at.is_some() {
                break;
            }
        }
        if let Some(cut) = cut_at {
            for &base in &bases[cut..] {
                warn!(dir = %dir.display(), base, "removing segment after a damaged one: its offsets no longer follow");
                for extension in ["log", "index", "timeindex"] {
                    disk.remove_file(&segment_path(dir, base, extension)).await?;
                }
                report.removed_segments.push(base);
            }
        }
        if segments.is_empty() {
            let segment =
                Segment::create(&disk, dir, log_start_offset, config.index_interval_bytes, now)
                    .await?;
            disk.sync_dir(dir).await?;
            segments.push(segment);
        }
        let log_end_offset = segments.last().expect("at least one segment").next_offset();
        log_start_offset = log_start_offset.min(log_end_offset);

        let mut log = PartitionLog {
            disk,
            clock,
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            durable_offset: log_end_offset,
            clean_flag_on_disk: clean,
            last_flush_ms: now,
            poison: None,
            open_report: report,
        };
        if !clean && !log.open_report.scanned.is_empty() {
            // Everything now on disk was checked (and synced by the scans): record that, so
            // the next unclean open scans only what comes after. (A new, empty partition has
            // nothing to record: creating ten thousand of them should not cost an fsync each.)
            log.write_checkpoint(false, log_end_offset).await?;
        }
        info!(
            dir = %log.dir.display(),
            segments = log.segments.len(),
            log_start_offset = log.log_start_offset,
            log_end_offset,
            clean,
            "opened partition log"
        );
        Ok(log)
    }
}
