//! The charts of `fjord bench` reports, drawn with plotters into SVG, from the reports alone:
//! - over time: throughput (records/s, MB/s) and the latency p50/p99/p99.9/max of each
//!   progress interval (log scale);
//! - the HDR percentile distribution: latency (log scale) against 1/(1-percentile) on a log
//!   scale, ticks read as 90%, 99%, 99.9%... The 100% point (the maximum) is drawn at x =
//!   the run's count of latency values, the rarest event the run could see.
//!
//! Each chart takes one run or several overlaid (`fjord bench plot`). With one run, colours
//! tell the latency quantiles apart; with several, colours tell the runs apart and the line
//! style (solid, dashed, finer dashes, dots) the quantile. The header names every run's
//! configuration.

use std::error::Error;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::progress::Sample;
use super::report::Report;
use super::stats::Quantiles;
use crate::cli::error::CliError;

/// Runs in one chart at most: as many as there are colours told apart.
pub(super) const RUNS_MAX: usize = COLORS.len();
const WIDTH: u32 = 1200;
/// Width of the legend beside each panel, px.
const LEGEND_WIDTH: u32 = 240;
const PANEL_HEIGHT: u32 = 300;
/// Height of one header line (the title, then one line per run when overlaid).
const HEADER_LINE_HEIGHT: u32 = 22;
const FONT: &str = "sans-serif";
/// Matplotlib's ten categorical colours.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// The latency series over time: name, value, and the (dash, gap) in px that tells it
/// apart when several runs share the chart (none: solid).
type Series = (&'static str, fn(&Quantiles) -> u64, Option<(u32, u32)>);
const QUANTILES: [Series; 4] = [
    ("p50", |q| q.p50, None),
    ("p99", |q| q.p99, Some((12, 5))),
    ("p99.9", |q| q.p999, Some((5, 4))),
    ("max", |q| q.max, Some((2, 4))),
];

/// One run in a chart, with the name its legend gives it.
pub(super) struct Run<'a> {
    pub(super) label: String,
    pub(super) report: &'a Report,
}

type Drawn = Result<(), Box<dyn Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// A legend entry: the series' name, its line and dash.
type Entry = (String, ShapeStyle, Option<(u32, u32)>);

/// The chart over time, as SVG.
pub(super) fn over_time(runs: &[Run<'_>]) -> Result<String, CliError> {
    let height = header_height(runs) + 3 * PANEL_HEIGHT;
    draw(runs, height, "over time", |area| {
        let panels = area.split_evenly((3, 1));
        let t_max =
            runs.iter().flat_map(|r| &r.report.samples).map(|s| s.seconds).fold(0.1, f64::max);
        throughput(&panels[0], runs, t_max, "records/s", |s| s.records_per_sec)?;
        throughput(&panels[1], runs, t_max, "MB/s", |s| s.mb_per_sec)?;
        latency_over_time(&panels[2], runs, t_max)
    })
}

/// The percentile distribution, as SVG.
pub(super) fn percentiles(runs: &[Run<'_>]) -> Result<String, CliError> {
    let height = header_height(runs) + 2 * PANEL_HEIGHT;
    draw(runs, height, "percentile distribution", |area| distribution(area, runs))
}

/// An SVG of `height` with the runs' header on top and `body` below it.
fn draw(
    runs: &[Run<'_>],
    height: u32,
    what: &str,
    body: impl FnOnce(&Area<'_>) -> Drawn,
) -> Result<String, CliError> {
    assert!(!runs.is_empty() && runs.len() <= RUNS_MAX, "{} runs in a chart", runs.len());
    let mut svg = String::new();
    let drawn = (|| -> Drawn {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, rest) = root.split_vertically(header_height(runs));
        header(&top, runs)?;
        body(&rest)?;
        root.present()?;
        Ok(())
    })();
    drawn.map_err(|e| CliError::failure(format!("cannot draw the {what} chart: {e}")))?;
    Ok(svg)
}

fn header_height(runs: &[Run<'_>]) -> u32 {
    let lines = if runs.len() == 1 { 1 } else { 1 + runs.len() as u32 };
    (lines + 1) * HEADER_LINE_HEIGHT
}

/// The title: one run's configuration, or one line per run.
fn header(area: &Area<'_>, runs: &[Run<'_>]) -> Drawn {
    let describe = |run: &Run<'_>| {
        let s = &run.report.summary;
        format!("{}; {:.1} s, {} records", s.config.describe(&s.mode), s.seconds, s.records)
    };
    let mut lines = Vec::new();
    if let [run] = runs {
        lines.push((format!("fjord bench {}", describe(run)), BLACK));
    } else {
        lines.push((format!("fjord bench: {} runs", runs.len()), BLACK));
        for (i, run) in runs.iter().enumerate() {
            lines.push((format!("{}: {}", run.label, describe(run)), COLORS[i]));
        }
    }
    for (i, (line, color)) in lines.into_iter().enumerate() {
        let y = (HEADER_LINE_HEIGHT / 2 + i as u32 * HEADER_LINE_HEIGHT) as i32;
        let size = if i == 0 { 18 } else { 14 };
        area.draw(&Text::new(line, (20, y), (FONT, size).into_font().color(&color)))?;
    }
    Ok(())
}

/// Throughput over time, one line per run.
fn throughput(
    area: &Area<'_>,
    runs: &[Run<'_>],
    t_max: f64,
    unit: &str,
    value: fn(&Sample) -> f64,
) -> Drawn {
    let y_max = runs.iter().flat_map(|r| &r.report.samples).map(value).fold(1.0, f64::max);
    let (area, side) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .caption(format!("throughput ({unit}) per 0.5 s interval"), (FONT, 15))
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc(unit)
        .y_label_formatter(&|y| number(*y))
        .draw()?;
    let mut entries = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let points = run.report.samples.iter().map(|s| (s.seconds, value(s)));
        let entry = (run.label.clone(), COLORS[i].stroke_width(2), None);
        line(&mut chart, points.collect(), &entry)?;
        entries.push(entry);
    }
    legend(&side, &entries)
}

/// Latency quantiles of each interval over time (log scale), four lines per run.
fn latency_over_time(area: &Area<'_>, runs: &[Run<'_>], t_max: f64) -> Drawn {
    let all = || runs.iter().flat_map(|r| &r.report.samples).filter_map(|s| s.latency_us);
    let y_min = decade_below(all().map(|q| q.p50).min().unwrap_or(1) as f64);
    let y_max = decade_above(all().map(|q| q.max).max().unwrap_or(10) as f64);
    let (area, side) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .caption("latency per 0.5 s interval (µs, log scale)", (FONT, 15))
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..t_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("latency (µs)")
        .y_label_formatter(&|y| number(*y))
        .draw()?;
    let mut entries = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        for (j, (name, pick, dash)) in QUANTILES.iter().enumerate() {
            let points = run
                .report
                .samples
                .iter()
                .filter_map(|s| s.latency_us.map(|q| (s.seconds, pick(&q).max(1) as f64)))
                .collect();
            let (label, color, dash) = match runs.len() {
                1 => (name.to_string(), COLORS[j], None),
                _ => (format!("{} {name}", run.label), COLORS[i], *dash),
            };
            let entry = (label, color.stroke_width(2), dash);
            line(&mut chart, points, &entry)?;
            entries.push(entry);
        }
    }
    legend(&side, &entries)
}

/// The HDR percentile distribution, one line per run.
fn distribution(area: &Area<'_>, runs: &[Run<'_>]) -> Drawn {
    let curves: Vec<Vec<(f64, f64)>> = runs.iter().map(|r| curve(r.report)).collect();
    let points = || curves.iter().flatten();
    // At least to 99.9%, so that short runs read on the same axis as long ones.
    let x_max = points().map(|p| p.0).fold(1_000.0, f64::max);
    let x_max = 10f64.powf(x_max.log10().ceil());
    let y_min = decade_below(points().map(|p| p.1).reduce(f64::min).unwrap_or(1.0));
    let y_max = decade_above(points().map(|p| p.1).fold(1.0, f64::max));
    let (area, side) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .caption("latency by percentile (HDR histogram of the whole run)", (FONT, 15))
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d((1f64..x_max).log_scale(), (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale of 1/(1-percentile))")
        .y_desc("latency (µs, log scale)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| number(*y))
        .draw()?;
    let mut entries = Vec::new();
    for (i, (run, points)) in runs.iter().zip(curves).enumerate() {
        let entry = (run.label.clone(), COLORS[i].stroke_width(2), None);
        line(&mut chart, points, &entry)?;
        entries.push(entry);
    }
    legend(&side, &entries)
}

/// The power of ten at or below `value` (at least 1): log axes from decade to decade, so
/// that they always carry labelled ticks.
fn decade_below(value: f64) -> f64 {
    10f64.powf(value.max(1.0).log10().floor())
}

/// The power of ten above `value` (the next one if `value` is one).
fn decade_above(value: f64) -> f64 {
    10f64.powf((value.max(1.0).log10() + 1e-9).ceil())
}

/// An axis value: thousands separated, decimals only below 10.
fn number(value: f64) -> String {
    if value.abs() >= 10.0 || value == 0.0 {
        let digits = format!("{:.0}", value.abs());
        let mut grouped = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if value < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else {
        format!("{value:.1}")
    }
}

/// A run's spectrum as (1/(1-percentile), latency µs) points; the 100% point, and any whose
/// x passes the run's count of values, at x = that count.
fn curve(report: &Report) -> Vec<(f64, f64)> {
    let count = report.percentiles.last().map_or(1, |p| p.count).max(1) as f64;
    report
        .percentiles
        .iter()
        .map(|p| {
            let rest = 1.0 - p.percentile / 100.0;
            let x = if rest > 0.0 { (1.0 / rest).min(count) } else { count };
            (x.max(1.0), p.value_us.max(1) as f64)
        })
        .collect()
}

/// The percentile that x = 1/(1-percentile) stands for: 10 is "90%", 1000 is "99.9%".
fn percentile_label(x: f64) -> String {
    let percentile = 100.0 * (1.0 - 1.0 / x.max(1.0));
    let decimals = (x.log10().ceil() as i64 - 2).clamp(0, 9) as usize;
    format!("{percentile:.decimals$}%")
}

/// One series, solid or dashed as its legend entry says.
fn line<X, Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    points: Vec<(f64, f64)>,
    (_, style, dash): &Entry,
) -> Drawn
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    match *dash {
        None => chart.draw_series(LineSeries::new(points, *style))?,
        Some((size, gap)) => chart.draw_series(DashedLineSeries::new(points, size, gap, *style))?,
    };
    Ok(())
}

/// The legend, beside the panel rather than over its lines.
fn legend(side: &Area<'_>, entries: &[Entry]) -> Drawn {
    const TOP: i32 = 40;
    const STEP: i32 = 18;
    for (i, (label, style, dash)) in entries.iter().enumerate() {
        let y = TOP + i as i32 * STEP;
        let sample = vec![(10, y), (40, y)];
        match *dash {
            None => side.draw(&PathElement::new(sample, *style))?,
            Some((size, gap)) => side.draw(&DashedPathElement::new(sample, size, gap, *style))?,
        }
        let text = label.as_str();
        side.draw(&Text::new(text, (48, y - 7), (FONT, 13).into_font().color(&BLACK)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_read_as_nines() {
        let labels: Vec<String> =
            [1.0, 2.0, 10.0, 100.0, 1e3, 1e4, 1e5].map(percentile_label).into();
        assert_eq!(labels, ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
    }

    #[test]
    fn log_axes_run_from_decade_to_decade() {
        assert_eq!((decade_below(1_600.0), decade_above(5_000.0)), (1_000.0, 10_000.0));
        assert_eq!((decade_below(0.0), decade_above(999.0)), (1.0, 1_000.0));
        // A maximum on a power of ten would lie on the frame: the axis goes one decade on.
        assert_eq!(decade_above(1_000.0), 10_000.0);
    }

    #[test]
    fn axis_numbers_group_thousands() {
        let labels: Vec<String> = [0.0, 2.5, 25.0, 25_000.0, 1_234_567.0].map(number).into();
        assert_eq!(labels, ["0", "2.5", "25", "25,000", "1,234,567"]);
    }
}
