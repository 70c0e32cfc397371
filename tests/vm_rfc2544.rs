//! vm-topology: quad
//!
//! pktgen's RFC 2544 mode against l2fwd: l2fwd forwards between the two DUT ports of the `quad`
//! topology; pktgen sends on the pktgen port linked to DUT port 0 and counts on the one behind
//! DUT port 1, searching the throughput of 64- and 1518-byte frames (1 s trials, 10 %
//! resolution) and measuring the latency at 0.9 of it. The test reads the `--json` document:
//! every size present, a throughput above 0 and at most the search's bound, the loss at the
//! throughput within the tolerance, ordered latency percentiles and a histogram holding every
//! sample. Figures under TCG say nothing about hardware: the debug-built pktgen offers 4,000 to
//! 17,000 frames/s of 64 bytes and 300 to 1,100 of 1518 there (as loaded as the host is), far
//! below a 1 Gbit/s line rate, so the test takes the link as 10 Mbit/s (`--link-speed 10`: line
//! rates of 14,881 and 813 frames/s, the search's bounds), which puts the search's lowest trial
//! (1/16 of the bound at 10 % resolution: 930 and 51 frames/s) well within what the emulation
//! sustains on a loaded host.
//! Run with `cargo xtask vm test -p oxpmd vm_rfc2544`.

mod common;

use common::{L2fwd, example, quad};
use serde_json::Value;

const SIZES: [u64; 2] = [64, 1518];
/// The line rate the search is bounded by, in Mbit/s.
const LINK_MBPS: u64 = 10;
const LOSS_TOLERANCE: f64 = 0.5;

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn rfc2544_search_through_l2fwd_reports_throughput_and_ordered_latency() {
    let q = quad();
    let l2fwd = L2fwd::start(&[&q.dut[0], &q.dut[1]]);
    let [way, _] = q.both_ways();
    let json = "/tmp/rfc2544.json";
    let expect_dst = format!("02:00:00:00:00:{:02x}", way.out_id);
    let out = std::process::Command::new(example("pktgen"))
        .args(["--tx-port", way.tx, "--rx-port", way.rx])
        .args(["--dst-mac", way.dut_in_mac, "-P"])
        .args(["--expect-rx-dst", &expect_dst, "--expect-rx-src", way.out_mac])
        .args([
            "--rfc2544",
            "--sizes",
            "64,1518",
            "--trial",
            "1",
            "--resolution",
            "10",
        ])
        .args(["--link-speed", &LINK_MBPS.to_string()])
        .args(["--loss-tolerance", &LOSS_TOLERANCE.to_string()])
        .args(["--drain", "0.5", "--json", json])
        .output()
        .expect("run pktgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let (lines, status) = l2fwd.stop();
    assert!(out.status.success(), "pktgen --rfc2544 failed ({})", out.status);
    assert!(status.success(), "l2fwd exit status {status}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("buffer check:") && l.contains("OK")),
        "l2fwd found every buffer back"
    );

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(json).expect("the --json file"))
        .expect("the --json file is JSON");
    let r = &doc["rfc2544"];
    assert_eq!(r["trial_secs"], 1.0);
    assert_eq!(r["resolution_pct"], 10.0);
    assert_eq!(r["link_mbps"], LINK_MBPS);
    let sizes = r["sizes"].as_array().expect("sizes");
    let got: Vec<u64> = sizes.iter().map(|s| s["frame_size"].as_u64().unwrap()).collect();
    assert_eq!(got, SIZES, "every size, in order");
    let kv = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pktgen-rfc2544: "))
        .expect("a pktgen-rfc2544 line");
    for s in sizes {
        let size = s["frame_size"].as_u64().unwrap();
        let f = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{size}: {k} = {}", s[k]));
        let (tput, max, line) = (f("throughput_pps"), f("max_rate_pps"), f("line_rate_pps"));
        assert!(
            tput > 0.0 && tput <= max && max <= line,
            "{size}: throughput {tput}, bound {max}, line rate {line}"
        );
        assert!(
            f("loss_pct_at_throughput") <= LOSS_TOLERANCE,
            "{size}: loss at the throughput"
        );
        assert!(kv.contains(&format!("{size}={tput:.0}")), "{size}: `{kv}`");
        let trials = s["trials"].as_array().unwrap();
        assert!(
            !trials.is_empty() && trials.len() <= 6,
            "{size}: {} trials (at most 1 + log2(10) rounded up)",
            trials.len()
        );
        assert!(
            trials
                .iter()
                .any(|t| t["pass"] == true && t["rate_pps"].as_f64() == Some(tput))
        );
        let l = &s["latency"];
        let p: Vec<f64> = ["min_us", "p50_us", "p90_us", "p99_us", "p99_9_us", "max_us"]
            .iter()
            .map(|k| {
                l[k].as_f64()
                    .unwrap_or_else(|| panic!("{size}: latency {k} = {}", l[k]))
            })
            .collect();
        assert!(
            p.windows(2).all(|w| w[0] <= w[1]),
            "{size}: latency percentiles ordered: {p:?}"
        );
        assert!(
            p[0] > 0.0,
            "{size}: a latency above 0 through two links and l2fwd"
        );
        let samples = l["samples"].as_u64().unwrap();
        let hist = l["histogram"].as_array().unwrap();
        let counted: u64 = hist.iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert!(
            samples > 0 && counted == samples,
            "{size}: histogram {counted} of {samples} samples"
        );
        let upper: Vec<f64> = hist.iter().map(|b| b["upper_us"].as_f64().unwrap()).collect();
        assert!(
            upper.windows(2).all(|w| w[0] < w[1]),
            "{size}: histogram buckets increasing"
        );
        let rate = l["rate_pps"].as_f64().unwrap();
        assert!(
            (rate - 0.9 * tput).abs() <= 0.1,
            "{size}: latency at 0.9 of {tput}: {rate}"
        );
    }
}
