//! vm-topology: quad
//!
//! l2fwd `--rx-interrupt` (its l3fwd-power mode: busy-poll while frames flow, sleep on the RX
//! interrupts when idle) between the two DUT ports of the `quad` topology, fed and checked by
//! pktgen as in `vm_l2fwd.rs`. pktgen sends rounds of frames separated by idle gaps
//! (`--gap`), so l2fwd's worker falls asleep between rounds and each round's first frames arrive
//! while it sleeps: every frame must come out exactly once and intact, l2fwd's counters must
//! agree, it must have slept, and it must find every buffer back in its pool.
//!
//! The test also prints, for the closing figures and never asserted (the VM is emulated and the
//! host shared): the CPU time of an idle l2fwd over 4 s, and the round trip of single frames that
//! each follow a 2 s idle gap, in poll mode and in interrupt mode.
//! Run with `cargo xtask vm test vm_l2fwd_power`.

mod common;

use std::time::Duration;

use common::{L2fwd, Quad, pktgen_exact, pktgen_exact_result, quad};

/// Frames per direction in the rounds with gaps.
const N: u64 = 1000;
/// pktgen's `--gap` for them: four rounds of 250, 1.5 s idle between.
const ROUNDS: &str = "250:1.5";
/// Single frames, each after a 2 s idle gap (and the first after pktgen's start-up).
const SINGLES: u64 = 3;
/// Long enough to tell a busy poller (about this much CPU) from a sleeping one (almost none).
const IDLE: Duration = Duration::from_secs(4);

/// Idle CPU time over [`IDLE`] and the (avg, max) round trip in us of single frames after 2 s
/// idle (direction 0), printed as `figure:` lines. Returns what went wrong with the frames.
fn figures(mode: &str, l2fwd: &L2fwd, q: &Quad) -> Vec<String> {
    let before = l2fwd.cpu_time();
    std::thread::sleep(IDLE);
    let cpu = l2fwd.cpu_time() - before;
    figure(&format!(
        "{mode}: idle l2fwd used {:.2} s CPU (user+sys) in {} s",
        cpu.as_secs_f64(),
        IDLE.as_secs()
    ));
    let [way, _] = q.both_ways();
    let (failures, r) = pktgen_exact_result(&way, SINGLES, &["--gap", "1:2"]);
    figure(&format!(
        "{mode}: single frames after 2 s idle: round trip min {} us, avg {} us, max {} us",
        r["lat_min_us"], r["lat_avg_us"], r["lat_max_us"]
    ));
    failures
}

/// Prints a `figure:` line past the test harness's capture of print!, so that a passing run
/// shows it too.
fn figure(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "figure: {line}");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn rx_interrupt_mode_forwards_rounds_after_idle_gaps_exactly_once() {
    let q = quad();
    let ports = [q.dut[0].as_str(), q.dut[1].as_str()];

    // Poll mode, for the figures only.
    let l2fwd = L2fwd::start(&ports);
    let failures = figures("poll mode", &l2fwd, &q);
    l2fwd.stop_and_check([SINGLES, 0], &failures);

    let l2fwd = L2fwd::start_with(&ports, &["--rx-interrupt"]);
    let mut failures = figures("interrupt mode (--rx-interrupt)", &l2fwd, &q);
    for way in q.both_ways() {
        failures.extend(pktgen_exact(&way, N, &["--gap", ROUNDS]));
    }
    let lines = l2fwd.stop_and_check([SINGLES + N, N], &failures);
    let slept: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("worker 0: slept "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("l2fwd says how often its worker slept");
    figure(&format!("interrupt mode: l2fwd's worker slept {slept} times"));
    assert!(slept > 0, "the idle worker never slept on its RX interrupts");
}
