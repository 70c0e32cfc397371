//! `cargo xtask bench l2fwd-null`: our l2fwd over two `null` ports on one forwarding core against
//! DPDK 22.11 `dpdk-testpmd` io forwarding over two `net_null` ports on one forwarding core.
//!
//! What each side does per packet (framework cost only, no device, packet data never touched):
//! - ours: `examples/l2fwd --port null0 --port null1 -q 2 --cores C --no-mac-updating -T 1`:
//!   null RX takes 32 buffers from the mempool in one bulk call through the queue's cache and
//!   writes their metadata (reset, length 64, port, queue); l2fwd buffers them for the partner
//!   port (no MAC rewrite) and sends when 32 are buffered or every 100 us; null TX gives the
//!   buffers back in one bulk call.
//! - DPDK: `dpdk-testpmd --no-huge --no-pci --vdev net_null0 --vdev net_null1 -l M,C --
//!   --forward-mode=io --stats-period 1`: net_null RX (size 64, copy=0: `rte_pktmbuf_alloc_bulk`
//!   and length/port per mbuf), io forwarding (RX burst 32, TX burst, unsent freed), net_null TX
//!   frees every mbuf.
//!
//! Each side runs for `--duration` seconds (default 10); its rate is the median of its per-second
//! forwarded-packet rates (sum over both ports of packets sent), the first second excluded.
//!
//! Both sides run on the same kind of memory, one block per kind (`--memory`, default both):
//! 2 MiB hugepages (ours `--pages 2m`, DPDK `--in-memory`, hugepages reserved for the run and the
//! reservation restored after) and 4 KiB pages (ours `--pages 4k`, DPDK `--no-huge`). A ratio is
//! printed only between runs on the same kind. The last line is `ratio: X` (ours / DPDK) of the
//! hugepage block when it ran (what DPDK applications use), else of the 4 KiB block.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const USAGE: &str = "\
usage: cargo xtask bench l2fwd-null [--duration SECS] [--runs N] [--core N] [--memory huge|4k|both] [--no-install]

  our examples/l2fwd over null0/null1 on one core against dpdk-testpmd io forwarding over
  net_null0/net_null1 on one core; prints both rates (Mpps) and `ratio: X` (ours / DPDK)

  --duration SECS   run time of each side per run (default 10, at least 3)
  --runs N          alternate runs per side, best median kept (default 1)
  --core N          forwarding core of both sides (default 1; DPDK's main lcore is the other one)
  --memory KIND     huge (2 MiB hugepages, reserved for the run as root), 4k, or both (default):
                    both sides on the same kind, a ratio per kind
  --no-install      do not install the Debian `dpdk` package when dpdk-testpmd is missing";

#[derive(Debug, Clone, PartialEq)]
struct Opts {
    duration: u64,
    runs: u32,
    core: usize,
    install: bool,
    memory: Vec<Memory>,
}

/// The memory both sides' packet buffers live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    Huge2M,
    Base4K,
}

impl Memory {
    fn label(self) -> &'static str {
        match self {
            Memory::Huge2M => "2 MiB hugepages",
            Memory::Base4K => "4 KiB pages",
        }
    }

    /// l2fwd's `--pages` value and the page text its set-up line prints.
    fn ours(self) -> (&'static str, &'static str) {
        match self {
            Memory::Huge2M => ("2m", "on 2 MiB pages"),
            Memory::Base4K => ("4k", "on 4 KiB pages"),
        }
    }

    /// testpmd's EAL memory option.
    fn dpdk(self) -> &'static str {
        match self {
            Memory::Huge2M => "--in-memory",
            Memory::Base4K => "--no-huge",
        }
    }
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        duration: 10,
        runs: 1,
        core: 1,
        install: true,
        memory: vec![Memory::Huge2M, Memory::Base4K],
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |what: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{what}: missing value"))?;
            v.parse::<u64>()
                .map_err(|_| format!("{what}: `{v}` is not a number"))
        };
        match a.as_str() {
            "--duration" => {
                o.duration = num("--duration")?;
                if !(3..=3600).contains(&o.duration) {
                    return Err("--duration: 3..=3600 seconds".into());
                }
            }
            "--runs" => {
                let n = num("--runs")?;
                if !(1..=20).contains(&n) {
                    return Err("--runs: 1..=20".into());
                }
                o.runs = n as u32;
            }
            "--core" => {
                let n = num("--core")?;
                if n > 1023 {
                    return Err("--core: 0..=1023".into());
                }
                o.core = n as usize;
            }
            "--no-install" => o.install = false,
            "--memory" => {
                o.memory = match it.next().map(String::as_str) {
                    Some("huge") => vec![Memory::Huge2M],
                    Some("4k") => vec![Memory::Base4K],
                    Some("both") => vec![Memory::Huge2M, Memory::Base4K],
                    other => {
                        return Err(format!(
                            "--memory: `{}`: expected huge, 4k or both",
                            other.unwrap_or("")
                        ));
                    }
                }
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(o)
}

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
    if ncpu < 2 || o.core >= ncpu {
        return Err(format!(
            "needs two CPUs and --core below {ncpu} (DPDK keeps its main lcore apart)"
        ));
    }
    let main_core = if o.core == 0 { 1 } else { 0 };
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
    let mut last = None;
    for &mem in &o.memory {
        let _hugepages = if mem == Memory::Huge2M {
            Some(HugepageReservation::at_least(HUGEPAGES_NEEDED)?)
        } else {
            None
        };
        let (mut best_ours, mut best_dpdk) = (0f64, 0f64);
        for run in 1..=o.runs {
            let ours = run_ours(&l2fwd, o, mem, run == 1)?;
            println!(
                "run {run}: ours  {ours:.3} Mpps (l2fwd, null0 <-> null1, core {}, {})",
                o.core,
                mem.label()
            );
            let dpdk = run_dpdk(&testpmd, o, main_core, mem, run == 1)?;
            println!(
                "run {run}: dpdk  {dpdk:.3} Mpps (testpmd io, net_null0 <-> net_null1, core {}, {})",
                o.core,
                mem.label()
            );
            best_ours = best_ours.max(ours);
            best_dpdk = best_dpdk.max(dpdk);
        }
        println!(
            "{}: ours {best_ours:.3} Mpps, dpdk {best_dpdk:.3} Mpps",
            mem.label()
        );
        if best_dpdk <= 0.0 {
            return Err("DPDK rate is zero: nothing to compare against".into());
        }
        let r = best_ours / best_dpdk;
        println!("{}: ratio {r:.3}", mem.label());
        last.get_or_insert((mem, r));
    }
    if let Some((mem, r)) = last {
        println!("ratio: {r:.3} (ours / DPDK, both on {})", mem.label());
    }
    Ok(())
}

/// 2 MiB hugepages both sides need: DPDK's `-m 1024` (512) and our pool and rings, with room.
const HUGEPAGES_NEEDED: u64 = 600;

/// Hugepages reserved for the hugepage block; the previous reservation is restored on drop.
struct HugepageReservation {
    previous: Option<u64>,
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

fn meminfo(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

impl HugepageReservation {
    fn at_least(free: u64) -> Result<HugepageReservation, String> {
        let have = meminfo("HugePages_Free").unwrap_or(0);
        if have >= free {
            return Ok(HugepageReservation { previous: None });
        }
        let total = meminfo("HugePages_Total").unwrap_or(0);
        let want = total + (free - have);
        std::fs::write(NR_HUGEPAGES, want.to_string()).map_err(|e| {
            format!(
                "the hugepage block needs {free} free 2 MiB hugepages ({have} free): writing {want} to                  {NR_HUGEPAGES}: {e} (run as root, or reserve them first, or use --memory 4k)"
            )
        })?;
        let now = meminfo("HugePages_Free").unwrap_or(0);
        if now < free {
            let _ = std::fs::write(NR_HUGEPAGES, total.to_string());
            return Err(format!(
                "asked the kernel for {want} 2 MiB hugepages, {now} are free: memory too fragmented?                  (use --memory 4k)"
            ));
        }
        println!("bench l2fwd-null: reserved 2 MiB hugepages: {total} -> {want} (restored after)");
        Ok(HugepageReservation {
            previous: Some(total),
        })
    }
}

impl Drop for HugepageReservation {
    fn drop(&mut self) {
        if let Some(p) = self.previous
            && let Err(e) = std::fs::write(NR_HUGEPAGES, p.to_string())
        {
            eprintln!("bench l2fwd-null: restoring {NR_HUGEPAGES} to {p}: {e}");
        }
    }
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

/// Prints the exact command line of a side (once per memory kind).
fn show(cmd: &Command) {
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    println!("  $ {} {}", cmd.get_program().to_string_lossy(), args.join(" "));
}

fn run_ours(l2fwd: &Path, o: &Opts, mem: Memory, print_command: bool) -> Result<f64, String> {
    let (pages, printed) = mem.ours();
    let mut cmd = Command::new(l2fwd);
    cmd.args([
        "--port",
        "null0",
        "--port",
        "null1",
        "-q",
        "2",
        "--no-mac-updating",
        "-T",
        "1",
    ])
    .args([
        "--cores",
        &o.core.to_string(),
        "--duration",
        &o.duration.to_string(),
        "--pages",
        pages,
    ]);
    if print_command {
        show(&cmd);
    }
    let out = cmd.output().map_err(|e| format!("{}: {e}", l2fwd.display()))?;
    // The pool's pages are what was asked (l2fwd does not fall back with --pages).
    if !String::from_utf8_lossy(&out.stderr).contains(printed) {
        return Err(format!(
            "l2fwd did not report its mempool {printed}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "l2fwd failed ({}):\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if !text.contains("no leak") {
        return Err(format!("l2fwd did not report a clean buffer check:\n{text}"));
    }
    let rates = parse_ours(&text);
    median_after_warmup(&rates).ok_or_else(|| format!("no `rate:` lines in the l2fwd output:\n{text}"))
}

fn run_dpdk(
    testpmd: &str,
    o: &Opts,
    main_core: usize,
    mem: Memory,
    print_command: bool,
) -> Result<f64, String> {
    // `timeout -s INT` stops testpmd like Ctrl-C, so it exits cleanly.
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "INT", &o.duration.to_string(), testpmd])
        .args([
            mem.dpdk(),
            "--no-pci",
            "--vdev",
            "net_null0",
            "--vdev",
            "net_null1",
            "-m",
            "1024",
        ])
        .args([
            "-l",
            &format!("{main_core},{}", o.core),
            "--main-lcore",
            &main_core.to_string(),
        ])
        .args([
            "--log-level",
            "lib.eal:error",
            "--",
            "--forward-mode=io",
            "--stats-period",
            "1",
        ])
        .args(["--total-num-mbufs=16384", "--nb-cores=1"])
        .stdin(Stdio::null());
    if print_command {
        show(&cmd);
    }
    let out = cmd.output().map_err(|e| format!("{testpmd}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rates = parse_testpmd(&text);
    median_after_warmup(&rates).ok_or_else(|| {
        format!(
            "no throughput figures in the testpmd output ({}):\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Per-period forwarded rates (Mpps) from l2fwd's `rate: rx X Mpps tx Y Mpps over S s` lines.
fn parse_ours(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("rate: "))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| *x == "tx")?;
            w.get(i + 1)?.parse().ok()
        })
        .collect::<Vec<f64>>()
        // The final summary repeats the whole run: drop it (it is the last line).
        .split_last()
        .map(|(_, rest)| rest.to_vec())
        .unwrap_or_default()
}

/// Per-period forwarded rates (Mpps) from testpmd's stats blocks: the sum of `Tx-pps` of all
/// ports of each `Port statistics` block.
fn parse_testpmd(text: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let mut cur: Option<f64> = None;
    for l in text.lines() {
        if l.contains("Port statistics ====") {
            if let Some(v) = cur.take() {
                out.push(v / 1e6);
            }
            cur = Some(0.0);
        } else if let Some(rest) = l.trim().strip_prefix("Tx-pps:") {
            let v: f64 = rest
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0.0);
            if let Some(c) = cur.as_mut() {
                *c += v;
            }
        }
    }
    if let Some(v) = cur {
        out.push(v / 1e6);
    }
    out
}

/// Median of the rates after the first non-zero one (warm-up).
fn median_after_warmup(rates: &[f64]) -> Option<f64> {
    let first = rates.iter().position(|r| *r > 0.0)?;
    let mut v: Vec<f64> = rates[first + 1..].iter().copied().filter(|r| *r > 0.0).collect();
    if v.is_empty() {
        v.push(rates[first]);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        assert_eq!(
            parse(&[]).unwrap(),
            Opts {
                duration: 10,
                runs: 1,
                core: 1,
                install: true,
                memory: vec![Memory::Huge2M, Memory::Base4K],
            }
        );
        let a: Vec<String> = ["--duration", "5", "--runs", "2", "--core", "0", "--no-install"]
            .map(String::from)
            .into();
        assert_eq!(
            parse(&a).unwrap(),
            Opts {
                duration: 5,
                runs: 2,
                core: 0,
                install: false,
                memory: vec![Memory::Huge2M, Memory::Base4K],
            }
        );
        let a: Vec<String> = ["--memory", "4k"].map(String::from).into();
        assert_eq!(parse(&a).unwrap().memory, vec![Memory::Base4K]);
        for bad in [
            &["--duration", "1"][..],
            &["--runs", "0"],
            &["--core", "x"],
            &["--what"],
            &["--duration"],
            &["--memory", "1g"],
        ] {
            let v: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(parse(&v).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_both_outputs() {
        let ours = "x\nrate: rx 10.000 Mpps tx 9.000 Mpps over 1.00 s\nrate: rx 20.0 Mpps tx 21.5 Mpps over 1.0 s\n\
                    rate: rx 20.0 Mpps tx 20.5 Mpps over 1.0 s\nrate: rx 20.0 Mpps tx 30.0 Mpps over 1.0 s\n\
                    rate: rx 19.0 Mpps tx 19.0 Mpps over 4.0 s\n";
        let r = parse_ours(ours);
        assert_eq!(r, [9.0, 21.5, 20.5, 30.0]);
        assert_eq!(median_after_warmup(&r), Some(21.5));
        let dpdk = "Port statistics ====\n  Tx-pps:            0          Tx-bps: 0\n  Tx-pps: 0\n\
                    Port statistics ====\n  Tx-pps:     24154481          Tx-bps: 0\n  Tx-pps:     24154558\n\
                    Port statistics ====\n  Tx-pps:     25000000\n  Tx-pps:     25000000\n\
                    Port statistics ====\n  Tx-pps:     26000000\n  Tx-pps:     26000000\n";
        let d = parse_testpmd(dpdk);
        assert_eq!(d.len(), 4);
        assert_eq!(d[0], 0.0);
        assert!((median_after_warmup(&d).unwrap() - 52.0).abs() < 1e-9);
        assert_eq!(median_after_warmup(&[0.0, 0.0]), None);
    }
}
