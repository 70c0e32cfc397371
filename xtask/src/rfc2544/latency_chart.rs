//! Chart (b): the latency CDF at one frame size, one curve per DUT, each measured at its own
//! latency rate (a fraction of its throughput). The curves are built from pktgen's histogram
//! buckets: a step at each bucket's upper bound to the fraction of frames at or below it. A DUT
//! without a latency measurement at that size gets no curve and a note under the plot.

use plotters::prelude::*;

use super::chart::{
    ChartInfo, Side, chart, color, decades, duts_title, legend, line, mesh, series_name, svg,
};

/// The latency CDF of `sides` at `frame_size` as SVG text.
pub(crate) fn latency_cdf_svg(sides: &[Side], frame_size: u32, info: &ChartInfo) -> Result<String, String> {
    let mut notes = Vec::new();
    let mut curves = Vec::new();
    for side in sides {
        let name = side.dut.program();
        let Some(sweep) = side.sweep else {
            notes.push(format!(
                "{name}: no result (its run failed; see the bench output)"
            ));
            continue;
        };
        let Some(size) = sweep.size(frame_size) else {
            notes.push(format!("{name}: {frame_size} B was not measured"));
            continue;
        };
        let Some(lat) = size.latency.as_ref() else {
            notes.push(format!(
                "{name}: no latency measured at {frame_size} B (no curve)"
            ));
            continue;
        };
        let cdf = lat.cdf();
        if cdf.is_empty() {
            notes.push(format!(
                "{name}: the latency histogram at {frame_size} B holds no sample"
            ));
            continue;
        }
        // Steps: the fraction holds until the next bound.
        let mut steps = Vec::with_capacity(2 * cdf.len());
        for (i, &(x, f)) in cdf.iter().enumerate() {
            if i > 0 {
                steps.push((x, cdf[i - 1].1));
            }
            steps.push((x, f));
        }
        notes.push(format!(
            "{name}: {} samples at {:.0} frames/s ({:.0}% of its throughput {:.0}); p50 {:.1} us, p99 {:.1} us, max {:.1} us",
            lat.samples,
            lat.rate_pps,
            100.0 * sweep.latency_fraction,
            size.throughput_pps,
            lat.p50_us,
            lat.p99_us,
            lat.max_us
        ));
        curves.push((side.dut, steps));
    }
    let (lo, hi) = curves
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.0))
        .filter(|&x| x > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = if hi > 0.0 { decades(lo, hi) } else { (1.0, 1000.0) };
    let title = format!(
        "RFC 2544 latency CDF, {frame_size}-byte frames: {}, test VM under TCG, {}",
        duts_title(sides),
        info.date
    );
    svg(&notes, |area| {
        let mut chart = chart(area, &title, (lo..hi).log_scale(), 0.0..1.0)?;
        mesh(
            &mut chart,
            "latency, us (log scale)",
            "fraction of frames at or below",
            None,
        )?;
        for (dut, steps) in &curves {
            // Points at 0 cannot be drawn on the log axis.
            let points = steps.iter().copied().filter(|p| p.0 > 0.0);
            line(&mut chart, points, color(*dut), series_name(*dut))?;
        }
        if curves.is_empty() {
            Ok(())
        } else {
            legend(&mut chart)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::chart::svg_check::{info, polylines, sides, stroke, texts};
    use super::super::result::Sweep;
    use super::super::result::fixtures::sweep_json;
    use super::*;
    use crate::dut::Dut;

    #[test]
    fn a_curve_per_dut_from_the_histogram() {
        let ours = Sweep::parse(&sweep_json(&[64, 128], |_| 20_000.0, Some(64))).unwrap();
        let dpdk = Sweep::parse(&sweep_json(&[64], |_| 21_000.0, Some(64))).unwrap();
        let svg = latency_cdf_svg(&sides(Some(&ours), Some(&dpdk)), 64, &info()).unwrap();
        let blue = polylines(&svg, &stroke(Dut::Ours));
        assert_eq!(blue.len(), 2, "curve and legend sample");
        // The fixture's CDF has 5 points: 1 + 2 * 4 vertices with the steps.
        assert_eq!(blue[0].len(), 9, "{blue:?}");
        // It only rises (SVG y grows downwards) and goes right.
        assert!(blue[0].windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 <= w[0].1));
        assert_eq!(polylines(&svg, &stroke(Dut::Dpdk))[0].len(), 9);
        let t = texts(&svg);
        for want in [
            "RFC 2544 latency CDF, 64-byte frames: oxpmd l2fwd vs DPDK testpmd, test VM under TCG, 2026-12-03",
            "latency, us (log scale)",
            "fraction of frames at or below",
            "ours: oxpmd l2fwd",
            "DPDK testpmd: 100 samples at 18900 frames/s (90% of its throughput 21000); p50 40.1 us, p99 90.2 us, max 400.0 us",
        ] {
            assert!(t.iter().any(|l| l == want), "missing `{want}` in:\n{t:?}");
        }
    }

    #[test]
    fn a_missing_latency_leaves_the_curve_out_with_a_note() {
        let ours = Sweep::parse(&sweep_json(&[64, 128], |_| 20_000.0, Some(64))).unwrap();
        let dpdk = Sweep::parse(&sweep_json(&[64, 128], |_| 21_000.0, None)).unwrap();
        let both = sides(Some(&ours), Some(&dpdk));
        let svg = latency_cdf_svg(&both, 64, &info()).unwrap();
        assert_eq!(polylines(&svg, &stroke(Dut::Ours)).len(), 2);
        assert!(polylines(&svg, &stroke(Dut::Dpdk)).is_empty());
        assert!(
            texts(&svg)
                .iter()
                .any(|t| t == "DPDK testpmd: no latency measured at 64 B (no curve)")
        );
        // Neither has latency at 128 B, nor a result at 256 B: a chart of notes only.
        let svg = latency_cdf_svg(&both, 128, &info()).unwrap();
        assert!(polylines(&svg, &stroke(Dut::Ours)).is_empty());
        let svg = latency_cdf_svg(&both, 256, &info()).unwrap();
        assert!(
            texts(&svg)
                .iter()
                .any(|t| t == "oxpmd l2fwd: 256 B was not measured")
        );
        let svg = latency_cdf_svg(&sides(None, Some(&dpdk)), 64, &info()).unwrap();
        assert!(
            texts(&svg)
                .iter()
                .any(|t| t.starts_with("oxpmd l2fwd: no result"))
        );
    }
}
