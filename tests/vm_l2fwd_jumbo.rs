//! vm-topology: quad
//!
//! Jumbo frames through l2fwd: l2fwd (MTU 9000, `--pcap`) between the two DUT ports of the
//! `quad` topology, pktgen (MTU 9000) sending frames through it both ways: 9018 bytes (with
//! FCS), then 2000 to 2299 bytes. Every frame is larger than a 2048-byte buffer holds, so each
//! crosses l2fwd as a chained packet (received over several descriptors, sent as several), and
//! pktgen checks every byte of each. The capture then holds every frame whole, which tshark reads
//! back: the count, and the frame lengths. Run with `cargo xtask vm test -p oxpmd vm_l2fwd_jumbo`.

mod common;

use std::process::Command;

use common::{L2fwd, pktgen_exact, quad};

const N: u64 = 600;

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn l2fwd_forwards_chained_jumbo_frames_and_captures_them_whole() {
    let q = quad();
    let pcap = "/tmp/l2fwd-jumbo.pcap";
    let l2fwd = L2fwd::start_with(&[&q.dut[0], &q.dut[1]], &["--mtu", "9000", "--pcap", pcap]);
    let mut failures = Vec::new();
    for sizes in ["9018", "2000-2299"] {
        for way in q.both_ways() {
            failures.extend(pktgen_exact(&way, N, &["--size", sizes, "--rate", "2000"]));
        }
    }
    l2fwd.stop_and_check([2 * N, 2 * N], &failures);

    let out = Command::new("tshark")
        .args([
            "-r",
            pcap,
            "-T",
            "fields",
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
        ])
        .output()
        .expect("tshark (cargo xtask vm setup installs it)");
    assert!(
        out.status.success(),
        "tshark -r: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lens: Vec<(usize, usize)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').expect("two fields");
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    assert_eq!(lens.len() as u64, 4 * N, "tshark read every captured frame");
    assert!(
        lens.iter().all(|(len, cap)| len == cap),
        "every frame captured whole"
    );
    let max = lens.iter().map(|l| l.0).max().unwrap();
    let min = lens.iter().map(|l| l.0).min().unwrap();
    assert_eq!((min, max), (1996, 9014), "frames of 2000..=9018 bytes with FCS");
    assert_eq!(lens.iter().filter(|l| l.0 == 9014).count() as u64, 2 * N);
    println!(
        "l2fwd forwarded {} chained frames each way (2000..=9018 bytes); tshark -r {pcap}: {} frames, {min}..={max} bytes, all whole",
        2 * N,
        lens.len()
    );
}
