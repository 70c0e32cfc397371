//! `cargo xtask bench ring`: benches/ring_perf.rs against DPDK's ring_perf_autotest.

use std::time::Instant;

use super::{BenchError, Better, Figures, Options, Summary, build_ours, dpdk, run_ours, summary};

/// A row of the table: case id (shared by both sides) and what it measures.
struct Row {
    case: &'static str,
    label: &'static str,
}

const fn row(case: &'static str, label: &'static str) -> Row {
    Row { case, label }
}

/// Rows whose ratios make the worst ratio: bulk enqueue+dequeue, SP/SC and MP/MC, 1 and 2 cores.
const MAIN: [Row; 8] = [
    row(
        "ptr/1core/spsc/bulk/8",
        "1 core   SP/SC bulk 8    cycles/bulk enq+deq",
    ),
    row(
        "ptr/1core/spsc/bulk/32",
        "1 core   SP/SC bulk 32   cycles/bulk enq+deq",
    ),
    row(
        "ptr/1core/mpmc/bulk/8",
        "1 core   MP/MC bulk 8    cycles/bulk enq+deq",
    ),
    row(
        "ptr/1core/mpmc/bulk/32",
        "1 core   MP/MC bulk 32   cycles/bulk enq+deq",
    ),
    row("ptr/2core/spsc/bulk/8", "2 cores  SP/SC bulk 8    cycles/element"),
    row(
        "ptr/2core/spsc/bulk/32",
        "2 cores  SP/SC bulk 32   cycles/element",
    ),
    row("ptr/2core/mpmc/bulk/8", "2 cores  MP/MC bulk 8    cycles/element"),
    row(
        "ptr/2core/mpmc/bulk/32",
        "2 cores  MP/MC bulk 32   cycles/element",
    ),
];

/// Other rows both sides print; shown for information, not part of the worst ratio.
const OTHER: [Row; 12] = [
    row(
        "ptr/1core/spsc/single/1",
        "1 core   SP/SC single    cycles/enq+deq",
    ),
    row(
        "ptr/1core/mpmc/single/1",
        "1 core   MP/MC single    cycles/enq+deq",
    ),
    row(
        "ptr/1core/spsc/burst/8",
        "1 core   SP/SC burst 8   cycles/burst enq+deq",
    ),
    row(
        "ptr/1core/spsc/burst/32",
        "1 core   SP/SC burst 32  cycles/burst enq+deq",
    ),
    row(
        "ptr/1core/mpmc/burst/8",
        "1 core   MP/MC burst 8   cycles/burst enq+deq",
    ),
    row(
        "ptr/1core/mpmc/burst/32",
        "1 core   MP/MC burst 32  cycles/burst enq+deq",
    ),
    row(
        "ptr/1core/spsc/empty/8",
        "1 core   SP/SC empty deq cycles/bulk-8 attempt",
    ),
    row(
        "ptr/1core/mpmc/empty/8",
        "1 core   MP/MC empty deq cycles/bulk-8 attempt",
    ),
    row("16B/1core/spsc/bulk/32", "16 B elements, 1 core SP/SC bulk 32"),
    row("16B/1core/mpmc/bulk/32", "16 B elements, 1 core MP/MC bulk 32"),
    row("16B/2core/spsc/bulk/32", "16 B elements, 2 cores SP/SC bulk 32"),
    row("16B/2core/mpmc/bulk/32", "16 B elements, 2 cores MP/MC bulk 32"),
];

/// crossbeam ArrayQueue (our measurement only), next to our MP/MC bulk row of the same shape.
const REFERENCE: [(Row, &str); 4] = [
    (
        row(
            "arrayqueue/1core/mpmc/pushpop/8",
            "1 core   8 push + 8 pop   cycles",
        ),
        "ptr/1core/mpmc/bulk/8",
    ),
    (
        row(
            "arrayqueue/1core/mpmc/pushpop/32",
            "1 core   32 push + 32 pop cycles",
        ),
        "ptr/1core/mpmc/bulk/32",
    ),
    (
        row(
            "arrayqueue/2core/mpmc/pushpop/8",
            "2 cores  batches of 8     cycles/element",
        ),
        "ptr/2core/mpmc/bulk/8",
    ),
    (
        row(
            "arrayqueue/2core/mpmc/pushpop/32",
            "2 cores  batches of 32    cycles/element",
        ),
        "ptr/2core/mpmc/bulk/32",
    ),
];

/// Runs both sides `opts.runs` times, alternately, and prints the comparison.
pub(crate) fn run(opts: &Options) -> Result<(), BenchError> {
    let started = Instant::now();
    // Ten runs at least: one two-core figure is a few milliseconds, so a single preemption on a
    // shared machine moves it by tens of percent; the median of ten is what the ratio is judged on.
    let runs = opts.runs.unwrap_or(10);
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cpus < 2 {
        return Err(BenchError::Command {
            what: "benchmarking the ring".into(),
            detail: format!("needs CPUs {:?}; this process may use {cpus}", dpdk::CPUS),
        });
    }
    let dpdk_test = dpdk::locate(opts.install)?;
    let exe = build_ours("ring_perf")?;
    let cpu_arg = dpdk::CPUS.map(|c| c.to_string()).join(",");
    let harness_args = vec!["--cpus".to_string(), cpu_arg];
    println!("commands:");
    println!("  {} {}", exe.display(), harness_args.join(" "));
    println!("  {}", dpdk_test.command_line("ring_perf_autotest"));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        eprintln!("run {i}/{}: ours (benches/ring_perf.rs) ...", runs);
        ours.push(run_ours(&exe, "ring", &harness_args)?);
        eprintln!("run {i}/{}: DPDK (dpdk-test ring_perf_autotest) ...", runs);
        theirs.push(dpdk_test.ring_perf()?);
    }

    println!(
        "ring: oxpmd-dma Ring<usize> vs DPDK {} rte_ring (legacy pointer API); CPUs {:?}; {} alternate runs each; \
         cycles (rdtsc), lower is better; spread = (worst - best) / median",
        dpdk_test.version,
        dpdk::CPUS,
        runs
    );
    println!("machine: {}", super::machine_load());
    print_header();
    let (mut worst_best, mut worst_median): (Option<f64>, Option<f64>) = (None, None);
    let mut missing = Vec::new();
    for r in &MAIN {
        match print_row(r, &ours, &theirs) {
            Some((b, m)) => {
                worst_best = Some(worst_best.map_or(b, |w| w.max(b)));
                worst_median = Some(worst_median.map_or(m, |w| w.max(m)));
            }
            None => missing.push(r.case),
        }
    }
    println!("-- not in the worst ratio:");
    for r in &OTHER {
        print_row(r, &ours, &theirs);
    }
    println!(
        "-- reference, crossbeam ArrayQueue<usize> (one CAS per element, no bulk), our measurement only (medians):"
    );
    println!("{:<48} {:>9} {:>9} {:>10}", "", "queue", "our bulk", "queue/bulk");
    for (r, bulk_case) in &REFERENCE {
        let q = summary(&ours, r.case, Better::Lower).map(|s| s.median);
        let b = summary(&ours, bulk_case, Better::Lower).map(|s| s.median);
        println!(
            "{:<48} {:>9} {:>9} {:>10}",
            r.label,
            fmt_cycles(q),
            fmt_cycles(b),
            match (q, b) {
                (Some(q), Some(b)) if b > 0.0 => format!("{:.2}", q / b),
                _ => "-".into(),
            }
        );
    }
    println!("runtime: {:.0} s", started.elapsed().as_secs_f64());
    if !missing.is_empty() {
        return Err(BenchError::Parse {
            what: "the ring figures".into(),
            detail: format!("no figure on one side for {missing:?}, so no worst ratio"),
        });
    }
    match (worst_best, worst_median) {
        (Some(b), Some(m)) => {
            println!("worst ratio of the bests: {b:.2}");
            println!("worst ratio: {m:.2}");
            Ok(())
        }
        _ => Err(BenchError::Parse {
            what: "the ring figures".into(),
            detail: "no comparable row".into(),
        }),
    }
}

fn fmt_cycles(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

fn print_header() {
    println!(
        "{:<48} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6} {:>7} {:>7}",
        "case", "ours", "median", "spread", "DPDK", "median", "spread", "ratio", "(median)"
    );
    println!(
        "{:<48} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6} {:>7} {:>7}",
        "", "best", "", "", "best", "", "", "bests", "medians"
    );
}

/// Prints one row and returns ours/DPDK of the bests and of the medians when both sides have it.
fn print_row(r: &Row, ours: &[Figures], theirs: &[Figures]) -> Option<(f64, f64)> {
    let o = summary(ours, r.case, Better::Lower);
    let t = summary(theirs, r.case, Better::Lower);
    let ratios = match (o, t) {
        (Some(o), Some(t)) if t.best > 0.0 && t.median > 0.0 => Some((o.best / t.best, o.median / t.median)),
        _ => None,
    };
    let cols = |s: Option<Summary>| match s {
        Some(s) => (
            format!("{:.2}", s.best),
            format!("{:.2}", s.median),
            format!("{:.0}%", s.spread_pct()),
        ),
        None => ("-".into(), "-".into(), "-".into()),
    };
    let (ob, om, os) = cols(o);
    let (tb, tm, ts) = cols(t);
    let ratio = |f: fn((f64, f64)) -> f64| ratios.map_or_else(|| "-".into(), |x| format!("{:.2}", f(x)));
    println!(
        "{:<48} {ob:>8} {om:>8} {os:>6} {tb:>8} {tm:>8} {ts:>6} {:>7} {:>7}",
        r.label,
        ratio(|x| x.0),
        ratio(|x| x.1)
    );
    ratios
}
