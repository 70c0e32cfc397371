//! `cargo xtask bench rfc2544-vm` and `cargo xtask bench rfc2544-chart`: the RFC 2544 throughput
//! and latency sweep of `pktgen --rfc2544` through our l2fwd and through DPDK's testpmd in the test
//! VM, its combined table and its two SVG charts (throughput against frame size; latency CDF at one
//! frame size). Method and figures: docs/benchmarks.md.

mod chart;
mod latency_chart;
mod options;
mod result;
mod table;
mod throughput_chart;
mod vm_run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chart::{ChartInfo, Side};
use result::Sweep;

use crate::dut::Dut;

/// The chart files written into the output directory.
pub(crate) const THROUGHPUT_SVG: &str = "throughput.svg";
pub(crate) const LATENCY_SVG: &str = "latency-cdf.svg";

/// The default output directory, `target/bench/rfc2544` of the workspace.
fn default_out() -> PathBuf {
    crate::bench::workspace_root().join("target/bench/rfc2544")
}

/// The frame size of the latency CDF: `wanted`, else 64 if measured, else the smallest measured.
fn cdf_size(sides: &[Side], wanted: Option<u32>) -> Option<u32> {
    let sizes: Vec<u32> = sides
        .iter()
        .filter_map(|s| s.sweep)
        .flat_map(|s| s.sizes.iter().map(|r| r.frame_size))
        .collect();
    wanted
        .or_else(|| sizes.contains(&64).then_some(64))
        .or_else(|| sizes.iter().copied().min())
}

/// Writes both charts into `out`, prints the settings, the table and, last, `ratio: X` (the lowest
/// ratio ours / DPDK over the sizes both measured), when there is one.
fn report(sides: &[Side], out: &Path, cdf: Option<u32>, info: &ChartInfo) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let write = |name: &str, svg: String| {
        let p = out.join(name);
        std::fs::write(&p, svg).map_err(|e| format!("write {}: {e}", p.display()))?;
        Ok::<_, String>(p)
    };
    let a = write(THROUGHPUT_SVG, throughput_chart::throughput_svg(sides, info)?)?;
    let size = cdf_size(sides, cdf).ok_or("no frame size was measured")?;
    let b = write(LATENCY_SVG, latency_chart::latency_cdf_svg(sides, size, info)?)?;
    if let Some(s) = sides.iter().find_map(|s| s.sweep) {
        println!(
            "\nRFC 2544, {}: {} Mbit/s link, {} s trials, loss tolerance {}%, resolution {}%, latency at {} \
             of the throughput",
            info.date, s.link_mbps, s.trial_secs, s.loss_tolerance_pct, s.resolution_pct, s.latency_fraction
        );
    }
    print!("{}", table::table(sides));
    println!("(pps: frames/s with loss within the tolerance; p50/p99: latency at the latency rate)");
    println!(
        "charts: {} and {} (latency at {size} B)",
        a.display(),
        b.display()
    );
    let ratios = table::ratios(sides);
    if let Some(worst) = ratios.iter().map(|r| r.1).reduce(f64::min) {
        println!("ratio: {worst:.3}");
    }
    Ok(())
}

fn usage_or_error(cmd: &str, usage: &str, e: &str) -> ExitCode {
    if e.is_empty() {
        println!("{usage}");
        ExitCode::SUCCESS
    } else {
        eprintln!("bench {cmd}: {e}\n{usage}");
        ExitCode::from(2)
    }
}

/// Entry point of `cargo xtask bench rfc2544-vm ARGS`.
pub fn vm(args: &[String]) -> ExitCode {
    let o = match options::parse_vm(args) {
        Ok(o) => o,
        Err(e) => return usage_or_error("rfc2544-vm", options::VM_USAGE, &e),
    };
    let out = o.out.clone().unwrap_or_else(default_out);
    match vm_run::run(&o, &out) {
        Ok(sweeps) => {
            let sides: Vec<Side> = sweeps
                .iter()
                .map(|(dut, sweep)| Side {
                    dut: *dut,
                    sweep: sweep.as_ref(),
                })
                .collect();
            let info = ChartInfo {
                date: chart::date_of_file(&out.join(format!("{}.json", o.duts[0].name()))),
            };
            match report(&sides, &out, o.cdf_size, &info) {
                Ok(()) if sweeps.iter().all(|(_, s)| s.is_some()) => ExitCode::SUCCESS,
                Ok(()) => {
                    eprintln!("bench rfc2544-vm: a DUT gave no result (see above)");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("bench rfc2544-vm: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("bench rfc2544-vm: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Entry point of `cargo xtask bench rfc2544-chart ARGS`.
pub fn chart(args: &[String]) -> ExitCode {
    let o = match options::parse_chart(args) {
        Ok(o) => o,
        Err(e) => return usage_or_error("rfc2544-chart", options::CHART_USAGE, &e),
    };
    let run = || -> Result<(), String> {
        let given: Vec<(Dut, &PathBuf)> = [(Dut::Ours, &o.ours), (Dut::Dpdk, &o.dpdk)]
            .into_iter()
            .filter_map(|(d, p)| p.as_ref().map(|p| (d, p)))
            .collect();
        let sweeps: Vec<(Dut, Sweep)> = given
            .iter()
            .map(|&(d, p)| Sweep::read(p).map(|s| (d, s)))
            .collect::<Result<_, _>>()?;
        let sides: Vec<Side> = sweeps
            .iter()
            .map(|(dut, s)| Side {
                dut: *dut,
                sweep: Some(s),
            })
            .collect();
        let info = ChartInfo {
            date: chart::date_of_file(given[0].1),
        };
        report(
            &sides,
            &o.out.clone().unwrap_or_else(default_out),
            o.cdf_size,
            &info,
        )
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench rfc2544-chart: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::result::fixtures::sweep_json;
    use super::*;

    #[test]
    fn the_cdf_size_defaults_to_64_else_the_smallest() {
        let a = Sweep::parse(&sweep_json(&[128, 64], |_| 1.0, None)).unwrap();
        let b = Sweep::parse(&sweep_json(&[256, 1518], |_| 1.0, None)).unwrap();
        let side = |s| Side {
            dut: Dut::Ours,
            sweep: Some(s),
        };
        assert_eq!(cdf_size(&[side(&a)], None), Some(64));
        assert_eq!(cdf_size(&[side(&b)], None), Some(256));
        assert_eq!(cdf_size(&[side(&b)], Some(1518)), Some(1518));
        assert_eq!(
            cdf_size(
                &[Side {
                    dut: Dut::Dpdk,
                    sweep: None
                }],
                None
            ),
            None
        );
    }

    #[test]
    fn the_chart_command_redraws_from_saved_results() {
        let dir = std::env::temp_dir().join(format!("xtask-rfc2544-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("ours.json"), dir.join("dpdk.json"));
        std::fs::write(&a, sweep_json(&[64, 128], |_| 20_000.0, Some(64))).unwrap();
        std::fs::write(&b, sweep_json(&[64, 128], |_| 25_000.0, Some(64))).unwrap();
        let out = dir.join("charts");
        let args: Vec<String> = ["--ours", a.to_str().unwrap(), "--dpdk", b.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .chain(["--out".to_string(), out.display().to_string()])
            .collect();
        assert_eq!(chart(&args), ExitCode::SUCCESS);
        for f in [THROUGHPUT_SVG, LATENCY_SVG] {
            let svg = std::fs::read_to_string(out.join(f)).unwrap();
            chart::svg_check::parse(&svg);
        }
        std::fs::write(&b, "{\"rfc2544\": {}}").unwrap();
        assert_eq!(chart(&args), ExitCode::FAILURE, "a broken result is an error");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
