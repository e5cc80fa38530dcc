//! The chart of a load run's report: an SVG of two panels, throughput and p99 latency over
//! time, from the progress bar's samples. Plain text, no dependency.

use super::stats::Sample;

/// A two-panel SVG: throughput and p99 latency over time.
pub(super) fn svg_chart(mode: &str, samples: &[Sample]) -> String {
    let (width, height, pad) = (800.0, 220.0, 50.0);
    let t_max = samples.iter().map(|s| s.0).fold(1e-9, f64::max);
    let rate_max = samples.iter().map(|s| s.1).fold(1.0, f64::max);
    let lat_max = samples.iter().map(|s| s.2 as f64).fold(1.0, f64::max);
    let line = |values: &dyn Fn(&Sample) -> f64, max: f64, top: f64| -> String {
        samples
            .iter()
            .map(|s| {
                format!(
                    "{:.1},{:.1}",
                    pad + s.0 / t_max * (width - 2.0 * pad),
                    top + height - pad - values(s) / max * (height - 2.0 * pad)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let panel = |top: f64, title: &str, max: f64, points: String, color: &str| {
        format!(
            "<g><rect x=\"{pad}\" y=\"{y0}\" width=\"{w}\" height=\"{h}\" fill=\"none\" stroke=\"#999\"/>\
             <text x=\"{pad}\" y=\"{ty}\" font-size=\"14\">{title} (max {max:.0})</text>\
             <polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{points}\"/></g>",
            y0 = top + pad,
            w = width - 2.0 * pad,
            h = height - 2.0 * pad,
            ty = top + pad - 8.0,
        )
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" font-family=\"sans-serif\">\
         <text x=\"{pad}\" y=\"24\" font-size=\"16\">fjord bench {mode}: {:.1} s</text>{}{}</svg>\n",
        2.0 * height + 20.0,
        t_max,
        panel(20.0, "records/s", rate_max, line(&|s| s.1, rate_max, 20.0), "#1f77b4"),
        panel(20.0 + height, "p99 latency µs", lat_max, line(&|s| s.2 as f64, lat_max, 20.0 + height), "#d62728"),
    )
}
