//! vm-topology: pair
//!
//! `pktgen --pcap` on the two linked igb ports of the `pair` topology: N frames go out of port 0
//! and come back on port 1; the capture (TX of port 0 and RX of port 1, or RX of port 1 only with
//! `--pcap-ports 1`) must hold exactly the frames pktgen counted, and tshark must read back that
//! many frames (`tshark -r FILE -T fields -e frame.number | wc -l`). N is below the capture's
//! 4096 records, so no frame can be dropped for want of a record, however slow the writer is.
//! Run with `cargo xtask vm test vm_pcap`.

mod common;

use std::process::Command;

use common::child_guard::run_bounded;
use common::{PKTGEN_LIMIT, port, result, run_pktgen};
use oxpmd::pmd::capture::{LINKTYPE_ETHERNET, read_pcap};

const N: u64 = 2000;

/// `tshark -r FILE -T fields -e frame.number | wc -l`.
fn tshark_frames(path: &str) -> u64 {
    let out = run_bounded(
        "tshark",
        Command::new("sh").args([
            "-c",
            &format!("tshark -r '{path}' -T fields -e frame.number | wc -l"),
        ]),
        PKTGEN_LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && Command::new("tshark").arg("-v").output().is_ok(),
        "tshark is missing (cargo xtask vm setup installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("tshark count `{text}`"))
}

fn pktgen_capture(pcap: &str, extra: &[&str]) -> std::collections::HashMap<String, String> {
    let (p0, _, peer) = port(0);
    assert_eq!(peer, 1, "pair topology: port 0 is linked to port 1");
    let (p1, _, _) = port(1);
    let count = N.to_string();
    let mut args = vec!["--tx-port", &p0, "--rx-port", &p1, "--count", &count];
    args.extend([
        "--size",
        "64-1518",
        "--rate",
        "20000",
        "--drain",
        "2",
        "--expect-all",
    ]);
    args.extend(["--cores", "0,1", "--pcap", pcap]);
    args.extend(extra);
    let out = run_pktgen(&args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}\n{stderr}");
    assert!(out.status.success(), "pktgen failed: {}", out.status);
    if extra.contains(&"--stats-json") {
        // stdout: JSON objects only, the last one the final report; the text went to stderr.
        let objs: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let last = objs.last().expect("a final JSON object");
        assert_eq!(last["type"], "final");
        assert_eq!(last["result"]["received"], N);
        assert_eq!(last["ports"][1]["ipackets"], N);
        result(&stderr)
    } else {
        result(&stdout)
    }
}

fn check_file(pcap: &str, expect: u64) {
    let bytes = std::fs::read(pcap).expect("read the capture");
    let (h, recs) = read_pcap(&bytes).expect("the capture parses");
    assert_eq!(h.linktype, LINKTYPE_ETHERNET);
    assert_eq!(recs.len() as u64, expect, "records in {pcap}");
    for r in &recs {
        assert_eq!(&r.data[42..44], &[0x0C, 0x5A], "pktgen's test header");
    }
    let n = tshark_frames(pcap);
    println!("tshark -r {pcap} -T fields -e frame.number | wc -l: {n}");
    assert_eq!(n, expect, "tshark frame count");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn pktgen_captures_tx_and_rx_on_igb_and_tshark_reads_it_back() {
    let pcap = "/tmp/x.pcap";
    let r = pktgen_capture(pcap, &[]);
    assert_eq!((r["sent"].as_str(), r["received"].as_str()), ("2000", "2000"));
    assert_eq!(r["pcap_dropped"], "0");
    assert_eq!(
        r["pcap_captured"],
        (2 * N).to_string(),
        "TX of port 0 + RX of port 1"
    );
    assert_eq!(r["pcap_written"], r["pcap_captured"]);
    check_file(pcap, 2 * N);
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn pktgen_captures_only_the_chosen_port() {
    let pcap = "/tmp/rx.pcap";
    let r = pktgen_capture(pcap, &["--pcap-ports", "1", "--stats-json"]);
    assert_eq!(r["pcap_dropped"], "0");
    assert_eq!(r["pcap_captured"], N.to_string(), "RX of port 1 only");
    check_file(pcap, N);
}
