//! `cargo xtask bench mempool`: the raw cache rows (benches/mempool_perf.rs against DPDK's
//! mempool_perf_autotest), then the driver path block (benches/mempool_driver_path.rs against the C
//! harness `driver_path.c`, see [`driver_path`]), whose worst ratio is the last line.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{BenchError, Better, Figures, Options, build_ours, dpdk, driver_path, keep_best, mega, run_ours};

/// DPDK's fixed window per case, in milliseconds.
const DPDK_WINDOW_MS: u64 = 5000;
const CORES: [u32; 2] = [1, 2];
const BULKS: [u32; 3] = [1, 4, 32];
const KEEPS: [u32; 2] = [32, 128];

/// Case ids compared: with cache (512), n_get_bulk == n_put_bulk, sizes not compile-time constants;
/// ours gives back with `put_bulk_unchecked` (as DPDK, no pool check); `<id>-checked` is ours with `put_bulk`.
fn cases() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for cores in CORES {
        for bulk in BULKS {
            for keep in KEEPS {
                v.push((
                    format!("{cores}core/bulk{bulk}/put{bulk}/keep{keep}/const0"),
                    format!(
                        "{cores} core{} get/put bulk {bulk:>2} n_keep {keep:>3}",
                        if cores > 1 { "s" } else { " " }
                    ),
                ));
            }
        }
    }
    v
}

/// Runs both sides `opts.runs` times, alternately, and prints the comparison.
pub(crate) fn run(opts: &Options) -> Result<(), BenchError> {
    let started = Instant::now();
    let runs = opts.runs.unwrap_or(3);
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cpus < 2 {
        return Err(BenchError::Command {
            what: "benchmarking the mempool".into(),
            detail: format!("needs CPUs {:?}; this process may use {cpus}", dpdk::CPUS),
        });
    }
    // DPDK's window can only be shortened by an integer divisor; both sides use the resulting window.
    let div = (DPDK_WINDOW_MS as f64 / opts.window_ms as f64).round().max(1.0) as u64;
    let window_us = DPDK_WINDOW_MS * 1000 / div;
    let cases = cases();
    let wanted: BTreeSet<String> = cases.iter().map(|(c, _)| c.clone()).collect();

    let dpdk_test = dpdk::locate(opts.install)?;
    let exe = build_ours("mempool_perf")?;
    let dp_exe = build_ours("mempool_driver_path")?;
    let dp_dpdk = driver_path::build_dpdk_harness()?;
    let cpus_arg = dpdk::CPUS.map(|c| c.to_string()).join(",");
    let harness_args = vec![
        "--cpus".to_string(),
        cpus_arg.clone(),
        "--window-us".to_string(),
        window_us.to_string(),
    ];
    // The driver path: same window, a tenth of it as warm-up, on both sides.
    let dp_window = ["--window-us".to_string(), window_us.to_string()];
    let dp_warmup = ["--warmup-us".to_string(), (window_us / 10).to_string()];
    let dp_ours_args: Vec<String> = ["--cpus".to_string(), cpus_arg]
        .into_iter()
        .chain(dp_window.clone())
        .chain(dp_warmup.clone())
        .collect();
    let dp_dpdk_args: Vec<String> = dp_window.into_iter().chain(dp_warmup).collect();
    let (mut dp_ours, mut dp_theirs) = (Vec::new(), Vec::new());
    let (mut ours, mut theirs) = (Figures::new(), Figures::new());
    for i in 1..=runs {
        eprintln!("run {i}/{}: ours (benches/mempool_perf.rs) ...", runs);
        keep_best(
            &mut ours,
            &run_ours(&exe, "mempool", &harness_args)?,
            Better::Higher,
        );
        eprintln!(
            "run {i}/{}: DPDK (dpdk-test mempool_perf_autotest, {} ms windows, about 15 s) ...",
            runs,
            window_us / 1000
        );
        keep_best(
            &mut theirs,
            &dpdk_test.mempool_perf(div, &wanted)?,
            Better::Higher,
        );
        eprintln!("run {i}/{runs}: driver path, ours (benches/mempool_driver_path.rs) ...");
        dp_ours.push(run_ours(&dp_exe, driver_path::GROUP, &dp_ours_args)?);
        eprintln!("run {i}/{runs}: driver path, DPDK (driver_path.c) ...");
        dp_theirs.push(dp_dpdk.run(&dp_dpdk_args)?);
    }

    println!(
        "mempool, raw cache rows (not the driver path): oxpmd-dma MempoolCache get_bulk/put_bulk_unchecked vs \
         DPDK {} rte_mempool generic get/put (ring_mp_mc, cache 512, 2047 objects of 2048 B, 4 KiB pages); \
         CPUs {:?}; {} ms per case; best of {} runs each; objects got+put per second, higher is better",
        dpdk_test.version,
        dpdk::CPUS,
        window_us as f64 / 1000.0,
        runs
    );
    println!("machine: {}", super::machine_load());
    println!("{:<40} {:>10} {:>10} {:>10}", "case", "ours", "DPDK", "DPDK/ours");
    let mut worst: Option<f64> = None;
    let mut missing = Vec::new();
    for (case, label) in &cases {
        match print_row(label, ours.get(case).copied(), theirs.get(case).copied()) {
            Some(r) => worst = Some(worst.map_or(r, |w| w.max(r))),
            None => missing.push(case.clone()),
        }
    }
    println!("-- ours with the checked put_bulk (every buffer's pool verified), not in the worst ratio:");
    for (case, label) in &cases {
        print_row(
            label,
            ours.get(&format!("{case}-checked")).copied(),
            theirs.get(case).copied(),
        );
    }
    if !missing.is_empty() {
        return Err(BenchError::Parse {
            what: "the mempool figures".into(),
            detail: format!("no figure on one side for {missing:?}, so no worst ratio"),
        });
    }
    let Some(raw_worst) = worst else {
        return Err(BenchError::Parse {
            what: "the mempool figures".into(),
            detail: "no comparable row".into(),
        });
    };
    println!(
        "raw cache worst ratio: {raw_worst:.2} (DPDK/ours over the 12 raw cache rows; not the driver path)"
    );
    let worst = driver_path::report(
        &dp_ours,
        &dp_theirs,
        &driver_path::command_line(&dp_exe, &dp_ours_args),
        &dp_dpdk.command_line(&dp_dpdk_args),
        &dp_dpdk.build,
    )?;
    println!("runtime: {:.0} s", started.elapsed().as_secs_f64());
    println!(
        "worst ratio: {worst:.2} (DPDK/ours, best of each side, over the 6 driver path rows; < 1: ours is faster)"
    );
    Ok(())
}

/// Prints one row and returns DPDK / ours when both sides have it.
fn print_row(label: &str, ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    let ratio = match (ours, theirs) {
        (Some(o), Some(t)) if o > 0.0 => Some(t / o),
        _ => None,
    };
    println!(
        "{:<40} {:>10} {:>10} {:>10}",
        label,
        ours.map_or_else(|| "-".into(), mega),
        theirs.map_or_else(|| "-".into(), mega),
        ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}"))
    );
    ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_cases_with_matching_ids() {
        let c = cases();
        assert_eq!(c.len(), 12);
        assert!(c.iter().any(|(id, _)| id == "2core/bulk32/put32/keep128/const0"));
        assert!(c.iter().any(|(id, _)| id == "1core/bulk1/put1/keep32/const0"));
    }
}
