//! `--pcap` and `--stats-json` of the pktgen example over a `ring` pair, without the VM: the pcap
//! file must parse (with `oxpmd::pmd::capture::read_pcap`, and with tshark when it is installed)
//! and hold exactly the frames pktgen reports it captured; every stdout line must be a JSON object.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::example;
use oxpmd::pmd::capture::{LINKTYPE_ETHERNET, read_pcap};

fn temp_pcap(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("oxpmd-test-{tag}-{}.pcap", std::process::id()))
}

fn run(args: &[&str]) -> (Output, String, String) {
    let out = Command::new(example("pktgen"))
        .args(args)
        .output()
        .expect("run pktgen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Frame count by tshark, or None (with a message) when tshark is not installed.
fn tshark_count(path: &Path) -> Option<usize> {
    let out = match Command::new("tshark")
        .args(["-r"])
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            println!("tshark not available ({e}): skipping the tshark check");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .count(),
    )
}

#[test]
fn pktgen_pcap_and_stats_json_over_a_ring_pair() {
    const N: u64 = 2000;
    let pcap = temp_pcap("both");
    let p = pcap.to_str().expect("utf-8 temp path");
    // 1500 pps: the run lasts more than the 1 s stats period, so periodic objects appear.
    let (out, stdout, stderr) = run(&[
        "--tx-port",
        "ring:cap",
        "--rx-port",
        "ring:cap",
        "--count",
        &N.to_string(),
        "--rate",
        "1500",
        "--size",
        "64-1518",
        "--expect-all",
        "--pcap",
        p,
        "--stats-json",
        "-T",
        "1",
    ]);
    assert!(out.status.success(), "pktgen failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("pktgen: setup: mempool of"),
        "set-up steps on stderr:\n{stderr}"
    );
    assert!(stderr.contains("pktgen: setup: link wait, port 1"), "{stderr}");

    // Every stdout line is one JSON object.
    let objs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let stats: Vec<&serde_json::Value> = objs.iter().filter(|o| o["type"] == "stats").collect();
    assert!(!stats.is_empty(), "no periodic stats object in:\n{stdout}");
    for s in &stats {
        let ports = s["ports"].as_array().expect("ports array");
        assert_eq!(ports.len(), 2);
        for port in ports {
            for k in [
                "ipackets",
                "opackets",
                "ibytes",
                "obytes",
                "imissed",
                "ierrors",
                "rx_nombuf",
                "ipps",
                "opps",
                "ibps",
                "obps",
            ] {
                assert!(port[k].is_number(), "{k} missing in {port}");
            }
            assert!(port["rx_queues"][0]["packets"].is_u64(), "{port}");
            assert!(port["tx_queues"][0]["pps"].is_number(), "{port}");
        }
    }
    let last = objs.last().expect("a final object");
    assert_eq!(last["type"], "final");
    assert_eq!(last["ok"], true);
    let r = &last["result"];
    assert_eq!(r["sent"], N);
    assert_eq!(r["received"], N);
    assert_eq!(last["ports"][0]["opackets"], N);
    assert_eq!(last["ports"][1]["ipackets"], N);
    let captured = r["pcap_captured"].as_u64().expect("pcap_captured");
    let dropped = r["pcap_dropped"].as_u64().expect("pcap_dropped");
    let written = r["pcap_written"].as_u64().expect("pcap_written");
    // Both directions: N sent on port 0 and N received on port 1. 2N is below the 4096 capture
    // records, so none can be missing, however slow the writer is.
    assert_eq!((captured, dropped), (2 * N, 0));
    assert_eq!(written, captured);

    let bytes = std::fs::read(&pcap).expect("read the pcap file");
    let (h, recs) = read_pcap(&bytes).expect("the pcap file parses");
    assert_eq!(
        (h.linktype, h.snaplen, h.version),
        (LINKTYPE_ETHERNET, 65535, (2, 4))
    );
    assert_eq!(recs.len() as u64, written);
    for r in &recs {
        assert_eq!(
            r.data.len(),
            r.orig_len as usize,
            "frames of at most 1514 bytes are whole"
        );
        assert_eq!(&r.data[42..44], &[0x0C, 0x5A], "pktgen's test header magic");
    }
    if let Some(n) = tshark_count(&pcap) {
        assert_eq!(n as u64, written, "tshark frame count");
    }
    let _ = std::fs::remove_file(&pcap);
}

#[test]
fn pktgen_pcap_ports_selects_the_rx_port() {
    const N: u64 = 500;
    let pcap = temp_pcap("rx");
    let p = pcap.to_str().expect("utf-8 temp path");
    let (out, stdout, stderr) = run(&[
        "--tx-port",
        "ring:caprx",
        "--rx-port",
        "ring:caprx",
        "--count",
        &N.to_string(),
        "--expect-all",
        "--pcap",
        p,
        "--pcap-ports",
        "1",
    ]);
    assert!(out.status.success(), "pktgen failed:\n{stdout}\n{stderr}");
    let kv = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pktgen-result: "))
        .unwrap_or_else(|| panic!("no pktgen-result line:\n{stdout}"));
    let get = |k: &str| -> u64 {
        kv.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing in {kv}"))
            .parse()
            .expect("a number")
    };
    assert_eq!(get("pcap_captured") + get("pcap_dropped"), N);
    let (_, recs) = read_pcap(&std::fs::read(&pcap).expect("read pcap")).expect("parses");
    assert_eq!(recs.len() as u64, get("pcap_written"));
    // RX of port 1 only: every frame is addressed to port 1 (dst = the RX port's MAC).
    let dst = &recs.first().expect("some frames").data[0..6];
    assert!(recs.iter().all(|r| &r.data[0..6] == dst && r.data[6..12] != *dst));
    if let Some(n) = tshark_count(&pcap) {
        assert_eq!(n, recs.len());
    }
    let _ = std::fs::remove_file(&pcap);
}

#[test]
fn pcap_options_are_checked() {
    for args in [
        &["--tx-port", "null0", "--pcap-ports", "0"][..],
        &["--tx-port", "null0", "--pcap", "/tmp/x.pcap", "--pcap-ports", "2"],
        &[
            "--tx-port",
            "null0",
            "--pcap",
            "/tmp/x.pcap",
            "--pcap-slots",
            "1000",
        ],
        &[
            "--tx-port",
            "null0",
            "--count",
            "1",
            "--pcap",
            "/nonexistent-dir/x.pcap",
        ],
    ] {
        let (out, stdout, _) = run(args);
        assert!(!out.status.success(), "{args:?} accepted:\n{stdout}");
    }
}

#[test]
fn l2fwd_pcap_and_stats_json_over_a_ring_pair() {
    let pcap = temp_pcap("l2fwd");
    let p = pcap.to_str().expect("utf-8 temp path");
    // The two ends of one ring pair: --tx-first starts 32 frames each way, which then circulate.
    let out = Command::new(example("l2fwd"))
        .args([
            "--port",
            "ring:l2cap",
            "--port",
            "ring:l2cap",
            "--tx-first",
            "-q",
            "2",
        ])
        .args([
            "--duration",
            "1",
            "-T",
            "1",
            "--pcap",
            p,
            "--pcap-ports",
            "1",
            "--stats-json",
        ])
        .output()
        .expect("run l2fwd");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "l2fwd failed:\n{stdout}\n{stderr}");
    assert!(stderr.contains("l2fwd: setup: mempool of"), "{stderr}");
    assert!(
        stderr.contains("buffer check") && stderr.contains("OK"),
        "{stderr}"
    );
    let objs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let last = objs.last().expect("a final object");
    assert_eq!(last["type"], "final");
    assert_eq!(last["pool_free"], last["pool_capacity"]);
    // RX of port 1 only: every frame port 1 received was captured or counted as dropped.
    let rx1 = last["forwarding"][1]["rx"].as_u64().expect("port 1 rx");
    assert!(rx1 >= 32, "the first burst arrived: {rx1}");
    assert_eq!(last["ports"][1]["ipackets"], rx1);
    let (c, d, w) = (
        last["pcap"]["captured"].as_u64().expect("captured"),
        last["pcap"]["dropped"].as_u64().expect("dropped"),
        last["pcap"]["written"].as_u64().expect("written"),
    );
    assert_eq!(c + d, rx1);
    assert_eq!(w, c);
    let (_, recs) = read_pcap(&std::fs::read(&pcap).expect("read pcap")).expect("parses");
    assert_eq!(recs.len() as u64, w);
    // As received on port 1: everything port 1 receives was sent by port 0, whose TX (its first
    // burst and what it forwards) carries dst 02:00:00:00:00:00.
    assert!(
        recs.iter().all(|r| r.data[0..6] == [2, 0, 0, 0, 0, 0]),
        "dst MACs"
    );
    if let Some(n) = tshark_count(&pcap) {
        assert_eq!(n as u64, w);
    }
    let _ = std::fs::remove_file(&pcap);
}
