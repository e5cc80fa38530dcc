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
        super::clean::recover_swap(&disk, dir).await?;
        let names = disk.list_dir(dir)?;
        let mut bases = segment_bases(&names);
        recovery::remove_orphans(&disk, dir, &names, &bases).await?;
        let checkpoint = Checkpoint::read(&disk, dir).await?;
        let clean = checkpoint.is_some_and(|c| c.clean_shutdown);
        let mut opening = Opening {
            disk: &disk,
            dir,
            index_interval_bytes: config.index_interval_bytes,
            report: OpenReport { clean_shutdown: clean, ..OpenReport::default() },
        };
        let log_start_offset =
            checkpoint.map_or(0, |c| c.log_start_offset).max(bases.first().copied().unwrap_or(0));
        opening.remove_segments_below(&mut bases, log_start_offset).await?;
        let now = clock.now_ms();
        let first_scanned = first_to_scan(&bases, checkpoint);
        let (mut segments, kept) = opening.open_contiguous(&bases, first_scanned, now).await?;
        opening.remove_segments_after_damage(&bases[kept..]).await?;
        if segments.is_empty() {
            segments.push(opening.create_first_segment(log_start_offset, now).await?);
        }
        segments.last_mut().expect("at least one segment").start_write_behind_here();
        let report = opening.report;
        let out_of_space = report.scanned.iter().find_map(|(_, s)| s.out_of_space.clone());
        let log_end_offset = segments.last().expect("at least one segment").next_offset();
        let mut log = PartitionLog {
            disk,
            clock,
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: log_start_offset.min(log_end_offset),
            durable_offset: log_end_offset,
            clean_flag_on_disk: clean,
            recovery_offset_on_disk: checkpoint.map_or(i64::MIN, |c| c.recovery_offset),
            last_flush_ms: now,
            poison: None,
            full: out_of_space,
            free_bytes_seen: 0,
            free_checked_ms: i64::MIN,
            closed: false,
            open_report: report,
            cleaned_to: i64::MIN,
            tombstones_due_ms: None,
            aborted: Vec::new(),
        };
        log.load_aborted().await?;
        log.checkpoint_what_recovery_checked().await?;
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

    /// After an unclean open that scanned segments, everything now on disk was checked (and
    /// synced by the scans): record that, so the next unclean open scans only what comes
    /// after. (A new, empty partition has nothing to record: creating ten thousand of them
    /// should not cost an fsync each.)
    ///
    /// On a full file system the log opens without it, full (`space.rs`): reads are served,
    /// and the next unclean open scans again.
    async fn checkpoint_what_recovery_checked(&mut self) -> Result<()> {
        if self.full.is_none()
            && !self.open_report.clean_shutdown
            && !self.open_report.scanned.is_empty()
        {
            let log_end_offset = self.log_end_offset();
            match self.write_checkpoint(false, log_end_offset).await {
                Err(error) if self.is_full() => {
                    warn!(dir = %self.dir.display(), %error, "opened a partition log on a full file system: reads only until space returns");
                }
                other => other?,
            }
        }
        Ok(())
    }
}

/// The base offsets of the segments in a directory listing (`<20 digits>.log`), in order.
fn segment_bases(names: &[String]) -> Vec<i64> {
    let mut bases: Vec<i64> = names
        .iter()
        .filter_map(|name| name.strip_suffix(".log"))
        .filter(|stem| stem.len() == 20)
        .filter_map(|stem| stem.parse::<i64>().ok())
        .collect();
    bases.sort_unstable();
    bases
}

/// The position in `bases` of the first segment to scan: after an unclean stop, the segment
/// holding the checkpoint's recovery offset (every segment without a checkpoint); after a
/// clean one, none (`bases.len()`).
fn first_to_scan(bases: &[i64], checkpoint: Option<Checkpoint>) -> usize {
    if checkpoint.is_some_and(|c| c.clean_shutdown) {
        return bases.len();
    }
    let recovery_offset = checkpoint.map_or(i64::MIN, |c| c.recovery_offset);
    bases.iter().rposition(|&base| base <= recovery_offset).unwrap_or(0)
}

/// What every step of an open needs: where the log is, how its segments are indexed, and
/// the report of what the open found and did.
struct Opening<'a, D: Disk> {
    disk: &'a D,
    dir: &'a Path,
    index_interval_bytes: u64,
    report: OpenReport,
}

impl<D: Disk> Opening<'_, D> {
    /// Removes the segments that lie wholly below the log start (a crash during retention
    /// leaves them: the start moves before the files go). The last one always stays.
    async fn remove_segments_below(
        &mut self,
        bases: &mut Vec<i64>,
        log_start_offset: i64,
    ) -> Result<()> {
        while bases.len() > 1 && bases[1] <= log_start_offset {
            let base = bases.remove(0);
            warn!(dir = %self.dir.display(), base, log_start_offset, "removing segment below the log start");
            self.remove_segment(base).await?;
        }
        Ok(())
    }

    /// Opens the segments of `bases` in order, trusting those before `first_scanned` and
    /// scanning (and repairing) the others, while each starts where its predecessor ends and
    /// up to the first a scan found damaged. Returns them and how many of `bases` they are:
    /// the ones after no longer follow.
    async fn open_contiguous(
        &mut self,
        bases: &[i64],
        first_scanned: usize,
        now_ms: i64,
    ) -> Result<(Vec<Segment<D>>, usize)> {
        let mut segments: Vec<Segment<D>> = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let (segment, damaged) = self.open_segment(base, i >= first_scanned, now_ms).await?;
            // A segment past a gap is one a crash brought back after a truncation had cut
            // its predecessor.
            if let Some(previous) = segments.last() {
                if segment.base_offset() != previous.next_offset() {
                    warn!(dir = %self.dir.display(), base, previous_next = previous.next_offset(), "segment does not follow its predecessor");
                    return Ok((segments, i));
                }
            }
            segments.push(segment);
            if damaged {
                return Ok((segments, i + 1));
            }
        }
        Ok((segments, bases.len()))
    }

    /// Opens one segment, scanned (and repaired) or trusted (which falls back to a scan when
    /// its indexes disagree with the log); a scan goes in the report. Returns the segment and
    /// whether a scan cut bytes off it.
    async fn open_segment(
        &mut self,
        base: i64,
        scan: bool,
        now_ms: i64,
    ) -> Result<(Segment<D>, bool)> {
        let mut segment = Segment::open_files(
            self.disk,
            self.dir,
            base,
            false,
            self.index_interval_bytes,
            now_ms,
        )
        .await?;
        let outcome = if scan {
            Some(recovery::scan_segment(&mut segment, true).await?)
        } else {
            recovery::open_trusted(&mut segment).await?
        };
        let damaged = outcome.as_ref().is_some_and(|outcome| outcome.invalid_bytes > 0);
        if let Some(outcome) = outcome {
            self.report.scanned.push((base, outcome));
        }
        Ok((segment, damaged))
    }

    /// Removes the segments after a damaged one or a gap: their offsets no longer follow.
    async fn remove_segments_after_damage(&mut self, bases: &[i64]) -> Result<()> {
        for &base in bases {
            warn!(dir = %self.dir.display(), base, "removing segment after a damaged one: its offsets no longer follow");
            self.remove_segment(base).await?;
        }
        Ok(())
    }

    /// The segment of a log that has none: empty, at the log start, its entry synced.
    async fn create_first_segment(&self, log_start_offset: i64, now_ms: i64) -> Result<Segment<D>> {
        let segment = Segment::create(
            self.disk,
            self.dir,
            log_start_offset,
            self.index_interval_bytes,
            now_ms,
        )
        .await?;
        self.disk.sync_dir(self.dir).await?;
        Ok(segment)
    }

    async fn remove_segment(&mut self, base: i64) -> Result<()> {
        for extension in ["log", "index", "timeindex", "txnindex"] {
            self.disk.remove_file(&segment_path(self.dir, base, extension)).await?;
        }
        self.report.removed_segments.push(base);
        Ok(())
    }
}
