//! `fjord bench plot A.json B.json ... --out DIR`: the reports of several runs (brokers,
//! settings) overlaid in one chart of each kind, `DIR/time.svg` and `DIR/percentiles.svg`,
//! each run named by its `--labels` entry or its file name.

use std::path::{Path, PathBuf};

use super::chart::{self, Run, RUNS_MAX};
use super::report::{write_file, Report};
use crate::cli::error::CliError;

#[derive(Debug, clap::Args)]
pub(super) struct PlotArgs {
    /// Reports written by `fjord bench ... --report DIR` (`DIR/<mode>.json`).
    #[arg(required = true, value_name = "REPORT")]
    reports: Vec<PathBuf>,
    /// Where to write `time.svg` and `percentiles.svg`.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The runs' names in the legends, in the order of the reports, comma-separated
    /// [default: the file names].
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
}

pub(super) fn run(args: PlotArgs) -> Result<(), CliError> {
    if args.reports.len() > RUNS_MAX {
        return Err(CliError::usage(format!("plot takes at most {RUNS_MAX} reports")));
    }
    if !args.labels.is_empty() && args.labels.len() != args.reports.len() {
        return Err(CliError::usage(format!(
            "--labels names {} runs but {} reports were given",
            args.labels.len(),
            args.reports.len()
        )));
    }
    let reports = args.reports.iter().map(|p| Report::read(p)).collect::<Result<Vec<_>, _>>()?;
    let labels = if args.labels.is_empty() { file_labels(&args.reports) } else { args.labels };
    let runs: Vec<Run<'_>> =
        labels.into_iter().zip(&reports).map(|(label, report)| Run { label, report }).collect();
    std::fs::create_dir_all(&args.out)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", args.out.display())))?;
    write_file(&args.out.join("time.svg"), &chart::over_time(&runs)?)?;
    write_file(&args.out.join("percentiles.svg"), &chart::percentiles(&runs)?)?;
    eprintln!("charts written to {}", args.out.display());
    Ok(())
}

/// Each report's file name without `.json`; with its folder's name in front where two runs
/// would otherwise share a name (`a/produce`, `b/produce`).
fn file_labels(paths: &[PathBuf]) -> Vec<String> {
    let stem = |p: &Path| p.file_stem().map_or(String::new(), |s| s.to_string_lossy().into());
    let stems: Vec<String> = paths.iter().map(|p| stem(p)).collect();
    paths
        .iter()
        .zip(&stems)
        .map(|(path, s)| {
            let parent = path.parent().and_then(|d| d.file_name());
            match parent {
                Some(dir) if stems.iter().filter(|t| *t == s).count() > 1 => {
                    format!("{}/{s}", dir.to_string_lossy())
                }
                _ => s.clone(),
            }
        })
        .collect()
}

/// Writes the report into `dir`: `<mode>.json`, `<mode>-time.svg`,
/// `<mode>-percentiles.svg`.
pub(super) fn write_report(report: &Report, dir: &Path, quiet: bool) -> Result<(), CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", dir.display())))?;
    let mode = &report.summary.mode;
    let json = serde_json::to_string_pretty(report).expect("a report serializes");
    write_file(&dir.join(format!("{mode}.json")), &json)?;
    let runs = [Run { label: mode.clone(), report }];
    write_file(&dir.join(format!("{mode}-time.svg")), &chart::over_time(&runs)?)?;
    write_file(&dir.join(format!("{mode}-percentiles.svg")), &chart::percentiles(&runs)?)?;
    if !quiet {
        eprintln!("report written to {}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_labels_add_the_folder_only_where_names_repeat() {
        let paths: Vec<PathBuf> =
            ["/r/fjord/produce.json", "/r/iggy/produce.json", "/r/kafka/e2e.json"]
                .map(PathBuf::from)
                .into();
        assert_eq!(file_labels(&paths), ["fjord/produce", "iggy/produce", "e2e"]);
    }
}
