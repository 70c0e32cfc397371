//! Without the VM: l2fwd `--rx-interrupt` refuses, at start and naming the port, a port whose
//! driver has no RX interrupts (here a `ring` pair) instead of falling back to polling; pktgen's
//! `--gap` pauses between rounds and still delivers every frame (over a `ring` pair).

mod common;

use std::process::Command;

use common::{example, result};

#[test]
fn l2fwd_rx_interrupt_refuses_a_port_without_rx_interrupts() {
    let out = Command::new(example("l2fwd"))
        .args([
            "--port",
            "ring:noirq",
            "--port",
            "ring:noirq",
            "--rx-interrupt=50",
        ])
        .args(["-T", "0", "--duration", "5"])
        .output()
        .expect("run l2fwd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "l2fwd must fail at start:\n{stderr}");
    assert!(
        stderr.contains("port 0 (ring:noirq): --rx-interrupt needs RX interrupts"),
        "the error names the port and the option:\n{stderr}"
    );
    let usage = Command::new(example("l2fwd"))
        .arg("--help")
        .output()
        .expect("run l2fwd");
    assert!(String::from_utf8_lossy(&usage.stdout).contains("--rx-interrupt[=N]"));
    let both = Command::new(example("l2fwd"))
        .args(["--port", "null0", "--rx-interrupt", "--pcap", "/dev/null"])
        .output()
        .expect("run l2fwd");
    assert_eq!(
        both.status.code(),
        Some(2),
        "--rx-interrupt with --pcap is a usage error"
    );
}

#[test]
fn pktgen_gap_pauses_between_rounds_and_loses_nothing() {
    let out = Command::new(example("pktgen"))
        .args(["--tx-port", "ring:gap", "--rx-port", "ring:gap", "--count", "300"])
        .args(["--gap", "100:0.3", "--ring-size", "256", "--expect-all"])
        .output()
        .expect("run pktgen");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pktgen failed:\n{text}");
    let r = result(&text);
    let counts = ["sent", "received", "unique", "lost"].map(|k| r[k].as_str());
    assert_eq!(counts, ["300", "300", "300", "0"], "sent, received, unique, lost");
    // Two gaps of 0.3 s (after frames 100 and 200; none after the last round) lie between the
    // first frame sent and the last.
    let secs: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("pktgen: sent 300 frames ("))
        .and_then(|l| l.split(" in ").nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `pktgen: sent` line in:\n{text}"));
    assert!(
        secs >= 0.6,
        "the rounds were not separated by the gaps: sent in {secs} s"
    );
}
