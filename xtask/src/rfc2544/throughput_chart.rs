//! Chart (a): RFC 2544 throughput against frame size, one series per DUT, with the line rate of
//! the link. Throughput is drawn in Mbit/s of frames (FCS included; preamble, start delimiter and
//! inter-frame gap not), the line rate in the same unit: link * size / (size + 20). Both axes are
//! logarithmic in frame size; the throughput axis is too when the line rate dwarfs a measured
//! rate (more than [`LOG_Y_ABOVE`] times it), as it does under TCG.

use plotters::coord::combinators::BindKeyPoints;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;

use super::chart::{
    Area, ChartInfo, Side, chart, color, decades, duts_title, err, legend, line, mesh, series_name, svg, tick,
};

/// The ratio of the highest line rate drawn to the lowest throughput measured above which the y
/// axis is logarithmic: on a linear one, such a point would sit on the x axis.
pub(crate) const LOG_Y_ABOVE: f64 = 20.0;

/// Bytes a frame occupies on the wire besides itself: preamble 7, start delimiter 1, gap 12.
const WIRE_OVERHEAD: f64 = 20.0;

/// Mbit/s of frames of `size` bytes at `pps`.
fn mbps(pps: f64, size: f64) -> f64 {
    pps * size * 8.0 / 1e6
}

/// The line rate of a `link_mbps` link at `size`-byte frames, Mbit/s of frames.
pub(crate) fn line_rate_mbps(link_mbps: f64, size: f64) -> f64 {
    link_mbps * size / (size + WIRE_OVERHEAD)
}

/// One DUT's points: (frame size, Mbit/s), positive ones only on a log axis.
struct Series {
    side: usize,
    points: Vec<(f64, f64)>,
}

/// The throughput chart of `sides` as SVG text.
pub(crate) fn throughput_svg(sides: &[Side], info: &ChartInfo) -> Result<String, String> {
    let sweeps: Vec<_> = sides.iter().filter_map(|s| s.sweep).collect();
    let first = sweeps.first().ok_or("no DUT has a result to chart")?;
    let mut sizes: Vec<u32> = sweeps
        .iter()
        .flat_map(|s| s.sizes.iter().map(|r| r.frame_size))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let (Some(&smin), Some(&smax)) = (sizes.first(), sizes.last()) else {
        return Err("no frame size was measured".into());
    };
    let link = first.link_mbps;
    let mut notes = Vec::new();
    let mut series = Vec::new();
    for (i, side) in sides.iter().enumerate() {
        let name = side.dut.program();
        let Some(sweep) = side.sweep else {
            notes.push(format!(
                "{name}: no result (its run failed; see the bench output)"
            ));
            continue;
        };
        let missing: Vec<String> = sizes
            .iter()
            .filter(|&&s| sweep.size(s).is_none())
            .map(|s| s.to_string())
            .collect();
        if !missing.is_empty() {
            notes.push(format!("{name}: no result at {} B", missing.join(", ")));
        }
        let capped: Vec<String> = sweep
            .sizes
            .iter()
            .filter(|r| r.at_bound())
            .map(|r| r.frame_size.to_string())
            .collect();
        if !capped.is_empty() {
            notes.push(format!(
                "{name}: passed at the search's upper bound at {} B (the DUT may do more: raise --max-rate)",
                capped.join(", ")
            ));
        }
        if sweep.link_mbps != link {
            notes.push(format!(
                "{name}: measured for a {} Mbit/s link; the line rate drawn is {link} Mbit/s",
                sweep.link_mbps
            ));
        }
        let mut points: Vec<(f64, f64)> = sweep
            .sizes
            .iter()
            .map(|r| {
                (
                    f64::from(r.frame_size),
                    mbps(r.throughput_pps, f64::from(r.frame_size)),
                )
            })
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push(Series { side: i, points });
    }
    let least = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(f64::INFINITY, f64::min);
    let (x0, x1) = (f64::from(smin), f64::from(smax));
    let line_top = line_rate_mbps(link, x1);
    let log_y = least <= 0.0 || line_top / least > LOG_Y_ABOVE;
    if log_y {
        for s in &mut series {
            let zero: Vec<String> = s
                .points
                .iter()
                .filter(|p| p.1 <= 0.0)
                .map(|p| format!("{} B", p.0))
                .collect();
            if !zero.is_empty() {
                notes.push(format!(
                    "{}: throughput 0 at {} (not drawn on the log axis)",
                    sides[s.side].dut.program(),
                    zero.join(", ")
                ));
            }
            s.points.retain(|p| p.1 > 0.0);
        }
    }
    // The line-rate curve, log-spaced between the smallest and the largest size measured.
    let line: Vec<(f64, f64)> = (0..=48)
        .map(|k| x0 * (x1 / x0).powf(f64::from(k) / 48.0))
        .map(|s| (s, line_rate_mbps(link, s)))
        .collect();
    notes.insert(
        0,
        format!(
            "Throughput: the highest offered rate with loss <= {}% in a {} s trial (search resolution {}%). \
             Line rate: {link} Mbit/s * size / (size + 20), frame bits only.",
            first.loss_tolerance_pct, first.trial_secs, first.resolution_pct
        ),
    );
    notes.insert(
        1,
        "Under TCG the emulation, not the driver, sets the rates: compare the DUTs with each other."
            .to_string(),
    );
    let title = format!(
        "RFC 2544 throughput: {}, io forwarding, test VM under TCG, {}",
        duts_title(sides),
        info.date
    );
    let plot = Plot {
        title,
        x: (x0 * 0.85, x1 * 1.15),
        ticks: sizes.iter().map(|&s| f64::from(s)).collect(),
        y_desc: if log_y {
            "throughput, Mbit/s of frames (log scale)"
        } else {
            "throughput, Mbit/s of frames"
        },
        sides,
        series,
        line,
        link,
    };
    svg(&notes, |area| {
        if log_y {
            let lowest = plot
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(plot.line[0].1, f64::min);
            let (lo, hi) = decades(lowest, line_top);
            plot.draw(area, (lo..hi).log_scale())
        } else {
            plot.draw(area, 0.0..line_top * 1.08)
        }
    })
}

/// What the chart shows, whichever kind its y axis is.
struct Plot<'a> {
    title: String,
    /// The x range.
    x: (f64, f64),
    /// The sizes measured, where the x ticks go.
    ticks: Vec<f64>,
    y_desc: &'static str,
    sides: &'a [Side<'a>],
    series: Vec<Series>,
    /// The line-rate curve.
    line: Vec<(f64, f64)>,
    /// The link speed, Mbit/s.
    link: f64,
}

impl Plot<'_> {
    fn draw<Y>(&self, area: &Area, y: Y) -> Result<(), String>
    where
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        // The x ticks are the sizes measured, the points one reads the chart at.
        let x = (self.x.0..self.x.1)
            .log_scale()
            .with_key_points(self.ticks.clone());
        let mut chart = chart(area, &self.title, x, y)?;
        mesh(
            &mut chart,
            "frame size, bytes with FCS (log scale)",
            self.y_desc,
            Some(&|v| tick(*v)),
        )?;
        let grey = RGBColor(0x70, 0x70, 0x70);
        let name = format!("line rate of a {} Mbit/s link", self.link);
        line(&mut chart, self.line.iter().copied(), grey, name)?;
        for s in &self.series {
            let dut = self.sides[s.side].dut;
            let c = color(dut);
            line(&mut chart, s.points.iter().copied(), c, series_name(dut))?;
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(err)?;
        }
        legend(&mut chart)
    }
}

#[cfg(test)]
mod tests {
    use super::super::chart::svg_check::{info, polylines, sides as both, stroke, texts};
    use super::super::result::Sweep;
    use super::super::result::fixtures::sweep_json;
    use super::*;
    use crate::dut::Dut;

    const GREY: &str = "#707070";

    fn sweep(sizes: &[u32], pps: f64) -> Sweep {
        Sweep::parse(&sweep_json(sizes, |_| pps, Some(64))).unwrap()
    }

    #[test]
    fn one_series_per_dut_and_the_line_rate_on_a_log_axis() {
        let (ours, dpdk) = (
            sweep(&[64, 128, 256, 512], 23_000.0),
            sweep(&[64, 128, 256], 25_000.0),
        );
        let svg = throughput_svg(&both(Some(&ours), Some(&dpdk)), &info()).unwrap();
        // The series line and the legend's sample, per DUT.
        let blue = polylines(&svg, &stroke(Dut::Ours));
        assert_eq!(blue.len(), 2, "{blue:?}");
        assert_eq!(blue[0].len(), 4, "one vertex per size measured");
        let red = polylines(&svg, &stroke(Dut::Dpdk));
        assert_eq!(red[0].len(), 3, "the size DPDK lacks is left out of its series");
        assert_eq!(polylines(&svg, GREY)[0].len(), 49);
        // Larger frames, more Mbit/s at the same pps: the line climbs (SVG y grows downwards).
        assert!(blue[0].windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 < w[0].1));
        let t = texts(&svg);
        for want in [
            "RFC 2544 throughput: oxpmd l2fwd vs DPDK testpmd, io forwarding, test VM under TCG, 2026-12-03",
            "throughput, Mbit/s of frames (log scale)",
            "frame size, bytes with FCS (log scale)",
            "ours: oxpmd l2fwd",
            "line rate of a 1000 Mbit/s link",
            "DPDK testpmd: no result at 512 B",
            "512",
        ] {
            assert!(t.iter().any(|l| l == want), "missing `{want}` in:\n{t:?}");
        }
    }

    #[test]
    fn near_line_rate_the_axis_is_linear_and_a_missing_side_is_noted() {
        let at_line_rate = |s: u32| 1e9 / ((f64::from(s) + 20.0) * 8.0);
        let ours = Sweep::parse(&sweep_json(&[64, 1518], at_line_rate, None)).unwrap();
        let svg = throughput_svg(&both(Some(&ours), None), &info()).unwrap();
        let t = texts(&svg);
        assert!(t.iter().any(|l| l == "throughput, Mbit/s of frames"), "{t:?}");
        assert!(
            !t.iter()
                .any(|l| l.contains("(log scale)") && l.contains("Mbit/s"))
        );
        assert!(
            t.iter()
                .any(|l| l.starts_with("DPDK testpmd: no result (its run failed"))
        );
        assert!(polylines(&svg, &stroke(Dut::Dpdk)).is_empty());
        assert!(
            t.iter()
                .any(|l| l.starts_with("oxpmd l2fwd: passed at the search's upper bound at 64, 1518 B"))
        );
        assert!(throughput_svg(&both(None, None), &info()).is_err());
    }

    #[test]
    fn zero_throughput_is_noted_on_a_log_axis() {
        let ours = Sweep::parse(&sweep_json(
            &[64, 128],
            |s| if s == 64 { 0.0 } else { 9000.0 },
            None,
        ))
        .unwrap();
        let svg = throughput_svg(&both(Some(&ours), None)[..1], &info()).unwrap();
        assert_eq!(polylines(&svg, &stroke(Dut::Ours))[0].len(), 1);
        assert!(texts(&svg).iter().any(|t| t.contains("throughput 0 at 64 B")));
    }

    #[test]
    fn line_rate() {
        assert!((line_rate_mbps(1000.0, 64.0) - 761.9).abs() < 0.1);
        // pktgen's own figure for the fixture agrees with ours.
        let s = sweep(&[64], 23_000.0);
        assert!((mbps(23_000.0, 64.0) - s.sizes[0].throughput_mbps).abs() < 1e-9);
    }
}
