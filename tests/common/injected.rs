//! pktgen over `fault:` ports: run it, read its numbers, check that its checks found exactly what
//! the fault ports injected.

use std::collections::HashMap;

use super::{result, run_pktgen};

/// Runs pktgen with `args`, prints its output, fails the test on a failed exit; returns its
/// `pktgen-result` pairs and its whole output (stdout, then stderr).
pub fn pktgen(args: &[&str]) -> (HashMap<String, String>, String) {
    let out = run_pktgen(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "pktgen {args:?} failed ({}):\n{text}",
        out.status
    );
    (result(&text), text)
}

/// The number `k` of pktgen's result pairs.
pub fn num(r: &HashMap<String, String>, k: &str) -> u64 {
    r.get(k)
        .unwrap_or_else(|| panic!("no {k} in {r:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{k}={} is not a number", r[k]))
}

/// pktgen's checks found exactly what was injected into `sent` frames, every category happened,
/// nothing else arrived and every buffer is back.
pub fn assert_found_exactly(r: &HashMap<String, String>, text: &str) {
    assert_eq!(
        num(r, "lost"),
        num(r, "fault_dropped") + num(r, "fault_rate_dropped"),
        "{text}"
    );
    assert_eq!(num(r, "dup"), num(r, "fault_duplicated"), "{text}");
    assert_eq!(num(r, "reordered"), num(r, "fault_reordered"), "{text}");
    assert_eq!(num(r, "corrupt"), num(r, "fault_corrupted"), "{text}");
    assert_eq!(num(r, "other"), 0, "{text}");
    assert_eq!(num(r, "fault_seen"), num(r, "sent"), "{text}");
    for k in [
        "fault_dropped",
        "fault_corrupted",
        "fault_duplicated",
        "fault_reordered",
    ] {
        assert!(num(r, k) > 0, "{k} = 0: nothing injected to find\n{text}");
    }
    assert_eq!(r["pool_free"], r["pool_capacity"], "no leak: {text}");
    assert!(
        text.contains("--expect-injected: found exactly what was injected"),
        "{text}"
    );
}
