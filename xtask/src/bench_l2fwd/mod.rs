//! `cargo xtask bench l2fwd-null`: our l2fwd over two `null` ports against DPDK 22.11
//! `dpdk-testpmd` io forwarding over two `net_null` ports, on one forwarding core and/or on two
//! (`--cores 1|2|both`, default 1).
//!
//! What each side does per packet (framework cost only, no device, packet data never touched):
//! - ours: `examples/l2fwd --port null0 --port null1 -q 2 --cores C --no-mac-updating -T 1`:
//!   null RX takes 32 buffers from the mempool in one bulk call through the thread's cache and
//!   writes their metadata (reset, length 64, port, queue); l2fwd buffers them for the partner
//!   port (no MAC rewrite) and sends when 32 are buffered or every 100 us; null TX gives the
//!   buffers back in one bulk call.
//! - DPDK: `dpdk-testpmd --no-huge --no-pci --vdev net_null0 --vdev net_null1 -l M,C --
//!   --forward-mode=io --stats-period 1`: net_null RX (size 64, copy=0: `rte_pktmbuf_alloc_bulk`
//!   and length/port per mbuf), io forwarding (RX burst 32, TX burst, unsent freed), net_null TX
//!   frees every mbuf.
//!
//! Two cores: one forwarding core per direction. Ours `-q 1 --cores A,B` (worker 0 on A polls
//! null0 and owns null1's TX queue, worker 1 on B the reverse), DPDK `--nb-cores=2` with
//! `--lcores 0@M,1@A,2@B` (stream net_null0 -> net_null1 on lcore 1, the reverse on lcore 2).
//! Each direction allocates and frees its buffers on its own core (null TX frees on the thread
//! that sends), on both sides: no buffer crosses between the cores. On a 2-CPU machine DPDK's
//! main lcore shares CPU M = A with the first forwarding lcore, and our main thread is pinned
//! there too (l2fwd `--main-core M`), so both sides are alike. Both outputs are checked for this
//! assignment (l2fwd's `worker` lines, testpmd's `Logical Core` lines) before a rate counts.
//!
//! Each side runs for `--duration` seconds (default 10); its rate is the median of its per-second
//! forwarded-packet rates (sum over both ports of packets sent), the first second excluded. Each
//! run's line also gives the share of the run its forwarding threads spent on a CPU and waiting
//! for one (`/proc/PID/task/TID/schedstat`), and the rate per CPU of forwarding thread time: on a
//! shared machine the first is the noise, shown, the second what the forwarding costs despite it.
//!
//! Both sides run on the same kind of memory, one block per kind (`--memory`, default both):
//! 2 MiB hugepages (ours `--pages 2m`, DPDK `--in-memory`, hugepages reserved for the run and the
//! reservation restored after) and 4 KiB pages (ours `--pages 4k`, DPDK `--no-huge`). A ratio is
//! printed only between runs on the same kind. With both core cases a table gives each side's
//! two-core / one-core factor and the ratios; then `scaling: ours F1, dpdk F2`. The last line is
//! `ratio: X` (ours / DPDK on one core) of the hugepage block when it ran (what DPDK
//! applications use), else of the 4 KiB block.
//!
//! After the runs of each memory kind, one more testpmd run of the one-core case with
//! `--record-core-cycles` gives DPDK's own count of cycles per forwarded packet, printed beside
//! the clock it reports divided by each side's best rate (the whole forwarding cost per packet:
//! RX with allocation, forwarding, TX with freeing).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

mod cpu_share;
mod hugepages;
mod options;
mod report;
mod sides;

use hugepages::{HUGEPAGES_NEEDED, HugepageReservation};
use options::{Cores, Memory, Opts, USAGE, parse};
use report::{Best, Results, case_lines, describe, main_thread_note};
use sides::{Placement, run_dpdk, run_dpdk_core_cycles, run_ours};

/// Entry point: `cargo xtask bench l2fwd-null [options]`.
pub fn null(args: &[String]) -> ExitCode {
    if args
        .iter()
        .any(|a| matches!(a.as_str(), "-h" | "--help" | "help"))
    {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench l2fwd-null: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench l2fwd-null: {e}");
            ExitCode::from(1)
        }
    }
}

fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

fn run(o: &Opts) -> Result<(), String> {
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let placements = o
        .cases
        .iter()
        .map(|&c| Placement::new(c, o.core, ncpu))
        .collect::<Result<Vec<_>, String>>()?;
    let testpmd = find_testpmd(o.install)?;
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "--example", "l2fwd"])
        .status()
        .map_err(|e| format!("cargo build --example l2fwd: {e}"))?;
    if !st.success() {
        return Err("cargo build --release --example l2fwd failed".into());
    }
    let l2fwd = root.join("target/release/examples/l2fwd");
    if let Some(p) = placements.iter().find(|p| p.cores == Cores::Two) {
        println!("{}", main_thread_note(p));
    }
    let mut results = Results::default();
    for &mem in &o.memory {
        let _hugepages = if mem == Memory::Huge2M {
            Some(HugepageReservation::at_least(HUGEPAGES_NEEDED)?)
        } else {
            None
        };
        // The core cases alternate within each run, so that a change of load hits them alike.
        let mut bests = vec![Best::default(); placements.len()];
        for run in 1..=o.runs {
            for (p, best) in placements.iter().zip(bests.iter_mut()) {
                let (what_ours, what_dpdk) = describe(p, mem);
                let (ours, threads) = run_ours(&l2fwd, p, o.duration, mem, run == 1)?;
                println!(
                    "run {run}: ours  {ours:.3} Mpps ({what_ours}); {}",
                    cpu_share::describe(ours, &threads)
                );
                let (dpdk, threads) = run_dpdk(&testpmd, p, o.duration, mem, run == 1)?;
                println!(
                    "run {run}: dpdk  {dpdk:.3} Mpps ({what_dpdk}); {}",
                    cpu_share::describe(dpdk, &threads)
                );
                best.add(ours, dpdk);
            }
        }
        for (p, best) in placements.iter().zip(&bests) {
            for l in case_lines(mem, p.cores, best)? {
                println!("{l}");
            }
            results.push(mem, p.cores, *best);
        }
        // The whole forwarding cost per packet on one core: testpmd's own count, and the clock
        // over each side's best rate (both forwarding threads are on a CPU all the time: their
        // run lines say how much).
        if let Some((p, best)) = placements
            .iter()
            .zip(&bests)
            .find(|(p, b)| p.cores == Cores::One && b.ours > 0.0 && b.dpdk > 0.0)
        {
            // A testpmd without the option, or a run that printed no count, costs this line
            // only: the timed figures above stand.
            let (dpdk_count, mhz) = match run_dpdk_core_cycles(&testpmd, p, o.duration, mem) {
                Ok(v) => v,
                Err(e) => {
                    println!("{}: no cycles per packet: {e}", mem.label());
                    continue;
                }
            };
            println!(
                "{}: cycles per forwarded packet, one core: ours {:.1}, dpdk {:.1} (the {mhz:.0} MHz clock \
                 testpmd reports over each side's best rate); testpmd's own count in the run above \
                 (--record-core-cycles): {dpdk_count:.2}",
                mem.label(),
                mhz / best.ours,
                mhz / best.dpdk
            );
        }
    }
    for l in results.summary(o.runs) {
        println!("{l}");
    }
    Ok(())
}

fn find_testpmd(install: bool) -> Result<String, String> {
    let found = |p: &str| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    for p in ["dpdk-testpmd", "/usr/bin/dpdk-testpmd"] {
        if found(p) {
            return Ok(p.into());
        }
    }
    if !install {
        return Err(
            "dpdk-testpmd not found; install the Debian `dpdk` package (apt-get install dpdk)".into(),
        );
    }
    eprintln!("bench l2fwd-null: dpdk-testpmd missing, installing the Debian `dpdk` package");
    let st = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "dpdk"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("apt-get install dpdk: {e}"))?;
    if !st.success() || !found("dpdk-testpmd") {
        return Err("could not install dpdk-testpmd (apt-get install dpdk failed; run as root?)".into());
    }
    Ok("dpdk-testpmd".into())
}
