//! pktgen over virtual ports, without the VM: the example binary (built by `cargo test` with the
//! package's examples) sends over a `ring` pair and checks what comes back, and drives a `null` port.

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/pktgen`, next to this test's `deps/` directory.
fn pktgen() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let p = dir.join("examples").join("pktgen");
    assert!(
        p.exists(),
        "{} is missing: `cargo test` builds the examples; run it for the root package",
        p.display()
    );
    p
}

fn result(out: &str) -> std::collections::HashMap<String, String> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("pktgen-result: "))
        .unwrap_or_else(|| panic!("no pktgen-result line in:\n{out}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn ring_pair_delivers_every_frame_intact() {
    ring_pair_check("64-1518", "ring:pg");
}

/// Jumbo frames (up to 9018 bytes, over 2048-byte buffers) leave as chains and are checked
/// whole: every byte of the pattern, the UDP and test checksums.
#[test]
fn ring_pair_delivers_every_chained_jumbo_frame_intact() {
    ring_pair_check("1500-9018", "ring:pgj");
}

fn ring_pair_check(sizes: &str, ring: &str) {
    let out = Command::new(pktgen())
        .args(["--tx-port", ring, "--rx-port", ring, "--count", "3000"])
        .args([
            "--size",
            sizes,
            "--streams",
            "4",
            "--ring-size",
            "256",
            // The receiver may be descheduled for a while on a loaded host: wait for late frames
            // (pktgen stops 0.1 s after the last one arrives, so a pass costs nothing more).
            "--drain",
            "10",
            "--expect-all",
        ])
        .output()
        .expect("run pktgen");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pktgen failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = result(&text);
    for (k, v) in [
        ("sent", "3000"),
        ("received", "3000"),
        ("unique", "3000"),
        ("lost", "0"),
    ] {
        assert_eq!(r[k], v, "{k}");
    }
    for k in ["dup", "corrupt", "other"] {
        assert_eq!(r[k], "0", "{k}");
    }
    assert_eq!(r["pool_free"], r["pool_capacity"], "no leak");
}

#[test]
fn null_port_sink_and_rate_limit() {
    let out = Command::new(pktgen())
        .args([
            "--tx-port",
            "null0",
            "--count",
            "500",
            "--rate",
            "100000",
            "--size",
            "imix",
        ])
        .output()
        .expect("run pktgen");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(result(&text)["sent"], "500");
}

#[test]
fn expect_all_fails_when_nothing_comes_back() {
    // null1 receives the null port's own frames, never pktgen's: every frame counts as lost.
    let out = Command::new(pktgen())
        .args([
            "--tx-port",
            "null0",
            "--rx-port",
            "null1",
            "--count",
            "100",
            "--drain",
            "0.2",
            "--expect-all",
        ])
        .output()
        .expect("run pktgen");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(result(&text)["lost"], "100");
}

#[test]
fn bad_arguments_are_refused() {
    for args in [
        &["--tx-port", "null0", "--size", "63"][..],
        &["--tx-port", "null0", "--size", "9019"],
        &["--tx-port", "null0", "--expect-all"],
        &["--tx-port", "null0", "--count", "1", "--duration", "1"],
        &["--rx-port", "null0"],
        &["--tx-port", "eth0"],
    ] {
        let out = Command::new(pktgen()).args(args).output().expect("run pktgen");
        assert!(!out.status.success(), "{args:?} accepted");
    }
}
