//! The `fault:` port against pktgen's checks, without the VM: over a `ring` pair pktgen must find
//! exactly the losses, duplicates, reorderings and corruptions the port injected (both directions,
//! with a rate limit too), the same again with the same seed; over a `null` port the inner port's
//! counters must account for every injected drop and duplicate.

mod common;

use std::process::Command;

use common::example;
use common::injected::{assert_found_exactly, num, pktgen};

const FAULTS: &str = "drop=1%,corrupt=0.5%,dup=0.5%,reorder=1%";
const FAULT_KEYS: [&str; 5] = [
    "fault_dropped",
    "fault_corrupted",
    "fault_duplicated",
    "fault_reordered",
    "fault_dup_no_buffer",
];

#[test]
fn ring_tx_faults_are_found_exactly_and_reproduced_by_the_seed() {
    let run = |pair: &str, seed: u32| {
        pktgen(&[
            "--tx-port",
            &format!("fault:{FAULTS},seed={seed},dir=tx:ring:{pair}"),
            "--rx-port",
            &format!("ring:{pair}"),
            "--count",
            "30000",
            "--size",
            "64-1518",
            "--ring-size",
            "256",
            "--expect-injected",
        ])
    };
    let (a, text) = run("fa", 11);
    assert_found_exactly(&a, &text);
    let (b, text_b) = run("fb", 11);
    assert_found_exactly(&b, &text_b);
    let (c, text_c) = run("fc", 12);
    assert_found_exactly(&c, &text_c);
    for k in FAULT_KEYS.iter().chain(&["lost", "dup", "reordered", "corrupt"]) {
        assert_eq!(a[*k], b[*k], "{k}: the same seed gave other faults");
    }
    assert!(
        FAULT_KEYS.iter().any(|k| a[*k] != c[*k]),
        "another seed gave the same faults: {a:?} / {c:?}"
    );
}

#[test]
fn ring_rx_faults_with_a_rate_limit_are_found_exactly() {
    // pktgen offers 20 000 pps for 0.5 s; the port lets 5 000 pps through: the excess is lost,
    // counted as rate drops, on top of the random faults.
    let (r, text) = pktgen(&[
        "--tx-port",
        "ring:fr",
        "--rx-port",
        &format!("fault:{FAULTS},rate=5000,seed=5,dir=rx:ring:fr"),
        "--count",
        "10000",
        "--rate",
        "20000",
        "--expect-injected",
    ]);
    assert_found_exactly(&r, &text);
    assert!(num(&r, "fault_rate_dropped") > 2000, "{text}");
    assert!(num(&r, "fault_dropped") > 0, "{text}");
}

/// `opackets` of the port line for `name` in pktgen's output.
fn opackets(text: &str, name: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.contains(&format!("({name}): ipackets")))
        .unwrap_or_else(|| panic!("no statistics line for {name}:\n{text}"));
    let v = line
        .split_whitespace()
        .skip_while(|w| *w != "opackets")
        .nth(1)
        .unwrap_or_else(|| panic!("no opackets in {line}"));
    v.parse().unwrap()
}

#[test]
fn null_sink_counts_account_for_every_injected_fault() {
    let run = || {
        pktgen(&[
            "--tx-port",
            "fault:drop=2%,corrupt=1%,dup=1%,seed=3:null7",
            "--count",
            "30000",
        ])
    };
    let (r, text) = run();
    let (seen, dropped, dups) = (
        num(&r, "fault_seen"),
        num(&r, "fault_dropped"),
        num(&r, "fault_duplicated"),
    );
    assert_eq!(seen, num(&r, "sent"), "{text}");
    assert!(
        dropped > 0 && dups > 0 && num(&r, "fault_corrupted") > 0,
        "{text}"
    );
    // What reached the null port: every frame sent, less the drops, plus the copies.
    assert_eq!(opackets(&text, "fault:null7"), seen - dropped + dups, "{text}");
    let (again, _) = run();
    for k in FAULT_KEYS {
        assert_eq!(r[k], again[k], "{k}: the same seed gave other faults");
    }
}

#[test]
fn a_bad_fault_spec_is_refused_with_the_reason() {
    let out = Command::new(example("pktgen"))
        .args(["--tx-port", "fault:drop=2,seed=1:null0", "--count", "10"])
        .output()
        .expect("run pktgen");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad fault port") && err.contains("drop: `2` is not a percentage"),
        "{err}"
    );
}
