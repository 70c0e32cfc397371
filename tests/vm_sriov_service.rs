//! The PF service (`oxpmd sriov serve`) administered at run time through its control socket
//! (`oxpmd vf ...`), against every VF driver: our igbvf, the kernel's igbvf, DPDK's igbvf PMD
//! (testpmd), and a VF handed over to an unprivileged process without the token. Each test
//! checks that nothing crosses between the VFs or to the wire that the policy forbids.
//!
//! Topology `pair`: the service holds port 0's PF; port 1 is the wire peer, driven by our igb
//! driver in this process. Build the examples first (`cargo build --examples`; `cargo test`
//! builds them).
//!
//! vm-topology: pair

#[path = "../pmd/tests/vm_sriov_common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use oxpmd::pmd::{Burst, MacAddr, Port, RxQueue, TxQueue};

mod sriov_service;
use sriov_service::*;

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn our_igbvf_mac_vlan_link_stats_and_bad_input_at_run_time() {
    init_log();
    let pfa = pf();
    let m = serve(&[
        "--vfs",
        "2",
        "--vf",
        "0:mac=02:00:00:00:66:00",
        "--vf",
        "1:mac=02:00:00:00:66:01",
    ]);
    let vfs = vf_addrs(&pfa);
    let token = token_of(&m);
    let mut p0 = open_port(&vfs[0], 0, Some(token.clone())).unwrap();
    let mut p1 = open_port(&vfs[1], 1, Some(token.clone())).unwrap();
    let pool = pool_for(&p0, "svc", 4096);
    let (mut rx0, tx0) = start(&mut p0, &pool);
    let (mut rx1, tx1) = start(&mut p1, &pool);
    let mut wire = Port::open(&env("OXPMD_PORT1"), 2).unwrap();
    let (mut wrx, mut wtx) = start(&mut wire, &pool);
    wire.wait_link_up(DEADLINE).unwrap();
    p0.wait_link_up(DEADLINE).unwrap();
    let wmac = wire.mac_addr();
    let (mac0, mac1): (MacAddr, MacAddr) = (
        "02:00:00:00:66:00".parse().unwrap(),
        "02:00:00:00:66:01".parse().unwrap(),
    );
    let mut got0 = 0usize;
    let mut got1 = 0usize;

    eprintln!("{}", vf_ok(&["list", &pfa]));
    // Baseline: wire -> VF 0 exactly, nothing to VF 1.
    send(&mut wtx, &pool, mac0, wmac, 1, 50);
    let s = receive(&mut rx0, 1, 50, Duration::from_secs(10));
    got0 += s.len();
    assert!(exact(s, 50), "baseline wire -> VF 0");
    assert!(receive(&mut rx1, 1, 1, Duration::from_millis(300)).is_empty());

    // MAC change at run time: the filter moves at once.
    let new0: MacAddr = "02:00:00:00:66:09".parse().unwrap();
    let t0 = Instant::now();
    vf_ok(&["set", &pfa, "0", "mac", "02:00:00:00:66:09"]);
    let cmd_done = t0.elapsed();
    let mut b = Burst::new();
    let mut seq = 0;
    let first = loop {
        send_raw(&mut wtx, &pool, &[frame(new0, wmac, 2, seq)]);
        seq += 1;
        if rx0.rx_burst(&mut b) > 0 && b.drain().any(|p| parse(p.data()).is_some_and(|(t, _)| t == 2)) {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < DEADLINE, "VF 0 never received on its new MAC");
    };
    eprintln!(
        "figure: `oxpmd vf set ... mac` to the VF receiving on the new MAC: {:.1} ms (the command itself {:.1} ms)",
        first.as_secs_f64() * 1e3,
        cmd_done.as_secs_f64() * 1e3
    );
    drain(&mut rx0);
    send(&mut wtx, &pool, new0, wmac, 3, 40);
    send(&mut wtx, &pool, mac0, wmac, 4, 40);
    let s = receive(&mut rx0, 3, 40, Duration::from_secs(10));
    got0 += s.len();
    assert!(exact(s, 40), "new MAC");
    assert!(
        receive(&mut rx0, 4, 1, Duration::from_millis(300)).is_empty(),
        "old MAC still reaches VF 0"
    );
    assert!(receive(&mut rx1, 4, 1, Duration::from_millis(300)).is_empty());
    // The VF was told to reset (CONTROL with NACK): our igbvf reports its link down until then.
    let t = Instant::now();
    while p0.link_status().unwrap().up && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!p0.link_status().unwrap().up, "the VF was not told");
    drop((rx0, tx0));
    drop(p0);
    let mut p0 = open_port(&vfs[0], 0, Some(token.clone())).unwrap();
    assert_eq!(p0.mac_addr(), new0, "the handshake gives the new MAC");
    let (mut rx0, mut tx0) = start(&mut p0, &pool);
    p0.wait_link_up(DEADLINE).unwrap();

    // Port VLAN 100 on VF 0: inserted on transmit, stripped on receive, only VLAN 100 in.
    vf_ok(&["set", &pfa, "0", "vlan", "100"]);
    drain(&mut wrx);
    send(&mut tx0, &pool, wmac, new0, 5, 30);
    assert_eq!(
        receive_vlan(&mut wrx, 5, 100, Duration::from_secs(3)),
        (30, 0),
        "VF 0 -> wire tagged 100"
    );
    let frames: Vec<_> = (0..30).map(|i| tagged(new0, wmac, 100, 6, i)).collect();
    send_raw(&mut wtx, &pool, &frames);
    let s = receive(&mut rx0, 6, 30, Duration::from_secs(10));
    got0 += s.len();
    assert!(exact(s, 30), "wire VLAN 100 -> VF 0, tag stripped");
    send(&mut wtx, &pool, new0, wmac, 7, 30);
    assert!(
        receive(&mut rx0, 7, 1, Duration::from_millis(500)).is_empty(),
        "untagged reached VF 0"
    );
    let frames: Vec<_> = (0..20).map(|i| tagged(mac1, wmac, 100, 8, i)).collect();
    send_raw(&mut wtx, &pool, &frames);
    assert!(
        receive(&mut rx1, 8, 1, Duration::from_millis(500)).is_empty(),
        "VLAN 100 reached VF 1"
    );
    send(&mut wtx, &pool, mac1, wmac, 9, 20);
    let s = receive(&mut rx1, 9, 20, Duration::from_secs(10));
    got1 += s.len();
    assert!(exact(s, 20), "untagged still reaches VF 1");
    // VF 0 to VF 1 (local switching) crosses the VLAN boundary: nothing arrives, nothing leaks.
    drain(&mut wrx);
    send(&mut tx0, &pool, mac1, new0, 10, 20);
    assert!(
        receive(&mut rx1, 10, 1, Duration::from_millis(500)).is_empty(),
        "VF 0 (VLAN 100) reached VF 1"
    );
    assert_eq!(
        receive_vlan(&mut wrx, 10, 100, Duration::from_millis(300)),
        (0, 0),
        "leaked to the wire"
    );
    vf_ok(&["set", &pfa, "0", "vlan", "0"]);
    send(&mut wtx, &pool, new0, wmac, 11, 20);
    let s = receive(&mut rx0, 11, 20, Duration::from_secs(10));
    got0 += s.len();
    assert!(exact(s, 20), "untagged again without the port VLAN");

    // Link state: disable takes the pool down and the VF reports link down.
    let t0 = Instant::now();
    vf_ok(&["set", &pfa, "0", "state", "disable"]);
    while p0.link_status().unwrap().up {
        assert!(t0.elapsed() < DEADLINE, "VF 0 never reported link down");
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!(
        "figure: `oxpmd vf set ... state disable` to the VF reporting link down: {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    drain(&mut wrx);
    send(&mut wtx, &pool, new0, wmac, 12, 20);
    assert!(
        receive(&mut rx0, 12, 1, Duration::from_millis(500)).is_empty(),
        "VF 0 received while down"
    );
    send(&mut tx0, &pool, wmac, new0, 13, 20);
    assert!(
        receive(&mut wrx, 13, 1, Duration::from_millis(500)).is_empty(),
        "VF 0 sent while down"
    );
    vf_ok(&["set", &pfa, "0", "state", "auto"]);
    p0.wait_link_up(DEADLINE).unwrap();
    tx0.reclaim();
    send(&mut wtx, &pool, new0, wmac, 14, 20);
    let s = receive(&mut rx0, 14, 20, Duration::from_secs(10));
    got0 += s.len();
    assert!(exact(s, 20), "traffic after link auto");

    // Per-VF counters from the PF side.
    eprintln!("{}", vf_ok(&["stats", &pfa]));
    let st = vf_json(&["stats", &pfa]);
    let rx = |vf: usize| st["stats"][vf]["rx_packets"].as_u64().unwrap() as usize;
    assert!(rx(0) >= got0, "VF 0 pool counted {} < {got0} received", rx(0));
    assert_eq!(rx(1), got1, "VF 1 pool counter");
    assert!(st["stats"][0]["tx_packets"].as_u64().unwrap() >= 30 + 20);

    // Bad input: each refused with its reason, nothing changed.
    let before = vf_json(&["show", &pfa, "0"]);
    let (c, _, e) = vf(&["set", &pfa, "5", "trust", "on"]);
    assert!(c == 1 && e.contains("VF 5 does not exist"), "{e}");
    let (c, _, e) = vf(&["set", &pfa, "0", "mac", "02:00:00:00:66:01"]);
    assert!(c == 1 && e.contains("already used by VF 1"), "{e}");
    let (c, _, e) = vf(&["set", &pfa, "0", "trust", "on", "max_tx_rate", "100"]);
    assert!(
        c == 1 && e.contains("unsupported") && e.contains("igb_core.c"),
        "{e}"
    );
    let (c, _, e) = vf(&["set", &pfa, "0", "vlan", "4095"]);
    assert!(c == 2 && e.contains("0..=4094"), "{e}");
    let r = raw(b"{\"op\":\"set\",\"vf\":0,\"set\":{\"vlan\":4095}}\n");
    assert_eq!(r["error"]["kind"], "bad-request", "{r}");
    let r = raw(b"not json\n");
    assert_eq!(r["error"]["kind"], "bad-request", "{r}");
    let r = raw(b"{\"op\":\"open\",\"vf\":0}\n");
    assert_eq!(r["error"]["kind"], "permission", "{r}");
    assert_eq!(
        vf_json(&["show", &pfa, "0"]),
        before,
        "a refused request changed something"
    );
    // A second service on the same socket is refused before it touches the device.
    let out = run_bounded(
        "a second oxpmd sriov serve",
        Command::new(env!("CARGO_BIN_EXE_oxpmd"))
            .args(["sriov", "serve", "--pf", &pfa, "--vfs", "2", "--socket"])
            .arg(socket()),
        COMMAND_LIMIT,
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("another PF service is running"),
        "{e}"
    );
    vf_ok(&["list", &pfa]);
    // The state file is version 2 and holds the run-time MAC.
    let bytes = std::fs::read(&m.state_file).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 2);
    let saved = oxpmd::pmd::sriov::state::decode(&bytes).unwrap();
    assert_eq!(saved.vfs[0].mac, Some(new0));
    assert!(
        m.has_line(|l| l.contains("administrator set mac 02:00:00:00:66:09")),
        "change not logged"
    );

    drop((rx0, tx0, rx1, tx1, wrx, wtx));
    drop((p0, p1, wire));
    // A service killed with its socket left behind: the next one replaces the stale socket.
    let _ = Command::new("kill").arg("-9").arg(m.pid().to_string()).status();
    std::thread::sleep(Duration::from_millis(300));
    assert!(socket().exists(), "the dead service's socket is gone");
    let m2 = serve(&["--vfs", "2", "--restart"]);
    assert!(
        m2.has_line(|l| l.contains("left by a service that is gone")),
        "{}",
        m2.output()
    );
    vf_ok(&["show", &pfa, "0"]);
    let (ok, out) = m2.stop();
    assert!(ok, "{out}");
    assert!(!socket().exists(), "the socket stays after a clean stop");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn kernel_igbvf_with_a_port_vlan_and_a_mac_change_at_run_time() {
    init_log();
    let pfa = pf();
    modprobe_igbvf();
    let m = serve(&["--vfs", "2", "--vf", "1:kernel,mac=02:00:00:00:77:01"]);
    assert!(
        m.wait_line(
            |l| l.contains("event VF 1: ready, MAC 02:00:00:00:77:01"),
            DEADLINE
        ),
        "{}",
        m.output()
    );
    let vfs = vf_addrs(&pfa);
    let ifname = kernel_netdev(&vfs[1]);
    let sysv = |f: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{ifname}/{f}"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let ip = |a: &[&str]| assert!(Command::new("ip").args(a).status().unwrap().success(), "ip {a:?}");
    ip(&["link", "set", "dev", &ifname, "up"]);
    ip(&["addr", "add", "10.78.0.1/24", "dev", &ifname]);
    let mut wire = Port::open(&env("OXPMD_PORT1"), 2).unwrap();
    let wpool = pool_for(&wire, "wire", 1024);
    let (mut wrx, mut wtx) = start(&mut wire, &wpool);
    wire.wait_link_up(DEADLINE).unwrap();
    let wmac = wire.mac_addr();
    vf_ok(&["set", &pfa, "1", "vlan", "100"]);

    // ARP and ICMP through VLAN 100, for the VF's MAC `vmac`; every frame from it must be tagged.
    let exchange = |vmac: MacAddr, wrx: &mut RxQueue, wtx: &mut TxQueue| -> (usize, usize, usize) {
        let ping = ChildGuard::spawn(
            "busybox ping",
            Command::new("busybox").args(["ping", "-c", "30", "-W", "1", "10.78.0.2"]),
            COMMAND_LIMIT,
        );
        let (mut arp, mut icmp, mut untagged) = (0, 0, 0);
        let mut b = Burst::new();
        let t = Instant::now();
        while icmp < 3 && t.elapsed() < DEADLINE {
            if wrx.rx_burst(&mut b) == 0 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            for p in b.drain() {
                let d = p.data();
                if d.len() < 14 || d[6..12] != vmac.0 {
                    continue;
                }
                let Some((vid, d)) = untag(d) else {
                    untagged += 1;
                    continue;
                };
                if vid != 100 || d.len() < 42 {
                    continue;
                }
                let et = u16::from_be_bytes([d[12], d[13]]);
                if et == 0x0806 && d[21] == 1 && d[38..42] == [10, 78, 0, 2] {
                    arp += 1;
                    let mut r = vec![0u8; 60];
                    r[0..6].copy_from_slice(&vmac.0);
                    r[6..12].copy_from_slice(&wmac.0);
                    r[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
                    r[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
                    r[22..28].copy_from_slice(&wmac.0);
                    r[28..32].copy_from_slice(&[10, 78, 0, 2]);
                    r[32..38].copy_from_slice(&vmac.0);
                    r[38..42].copy_from_slice(&[10, 78, 0, 1]);
                    r.splice(12..12, [0x81, 0x00, 0, 100]);
                    send_raw(wtx, &wpool, &[r]);
                } else if et == 0x0800 && d[0..6] == wmac.0 && d[23] == 1 {
                    icmp += 1;
                }
            }
        }
        drop(ping);
        (arp, icmp, untagged)
    };
    let old: MacAddr = "02:00:00:00:77:01".parse().unwrap();
    let t = Instant::now();
    while sysv("operstate") != "up" && t.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sysv("operstate"), "up");
    let (arp, icmp, untagged) = exchange(old, &mut wrx, &mut wtx);
    assert!(
        arp >= 1 && icmp >= 3,
        "kernel VF through port VLAN 100: {arp} ARP, {icmp} ICMP"
    );
    assert_eq!(untagged, 0, "untagged frames from the VF reached the wire");

    // MAC change at run time: the kernel VF is told to reset (CONTROL) and should come back
    // with the new MAC. Under QEMU (10.0) it may never hear of it: hw/net/igb_core.c,
    // mailbox_interrupt_to_vf(), raises EICR bit `(IVAR_MISC & 3) << (22 - 3 * vf)` (the vector
    // number shifted, not a bit at it), which igb_msix_notify() maps to the VF's vector
    // `IVAR_MISC - 1`. igbvf puts the mailbox on vector 2 (TX 0, RX 1), so the mailbox interrupt
    // lands on its RX vector, whose handler never reads the mailbox. So wait a bounded time,
    // then take the interface down and up in the guest: igbvf resets the VF on the way and
    // reads its MAC from the PF's RESET reply. On hardware the CONTROL message interrupts the VF at
    // once, and igbvf's 2 s watchdog would see it too: 5 s is ample to see it on its own.
    let t0 = Instant::now();
    vf_ok(&["set", &pfa, "1", "mac", "02:00:00:00:77:09"]);
    let on_its_own = Duration::from_secs(5);
    while sysv("address") != "02:00:00:00:77:09" && t0.elapsed() < on_its_own {
        std::thread::sleep(Duration::from_millis(50));
    }
    if sysv("address") == "02:00:00:00:77:09" {
        eprintln!(
            "figure: kernel igbvf took the new MAC {:.1} s after `oxpmd vf set ... mac` (on its own)",
            t0.elapsed().as_secs_f64()
        );
    } else {
        eprintln!(
            "kernel igbvf: still {} {} s after `oxpmd vf set ... mac`: it did not get the PF's \
             CONTROL message (QEMU's igb delivers the VF mailbox interrupt on the VF's RX vector, \
             see hw/net/igb_core.c mailbox_interrupt_to_vf); falling back to `ip link set dev \
             {ifname} down; ip link set dev {ifname} up` so igbvf resets and re-reads its MAC",
            sysv("address"),
            on_its_own.as_secs()
        );
        let t1 = Instant::now();
        ip(&["link", "set", "dev", &ifname, "down"]);
        ip(&["link", "set", "dev", &ifname, "up"]);
        while sysv("address") != "02:00:00:00:77:09" {
            assert!(
                t1.elapsed() < DEADLINE,
                "the kernel VF kept {} after the down/up fallback",
                sysv("address")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "figure: kernel igbvf took the new MAC {:.1} s after `oxpmd vf set ... mac` ({:.1} s after the down/up fallback)",
            t0.elapsed().as_secs_f64(),
            t1.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    while sysv("operstate") != "up" && t.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("ip")
        .args(["neigh", "flush", "dev", &ifname])
        .status();
    let new: MacAddr = "02:00:00:00:77:09".parse().unwrap();
    let (arp, icmp, untagged) = exchange(new, &mut wrx, &mut wtx);
    assert!(
        arp >= 1 && icmp >= 3,
        "after the MAC change: {arp} ARP, {icmp} ICMP"
    );
    assert_eq!(untagged, 0);
    eprintln!("{}", vf_ok(&["show", &pfa, "1"]));
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn dpdk_testpmd_igbvf_with_the_token_a_port_vlan_and_its_default_max_frame() {
    init_log();
    let pfa = pf();
    let m = serve(&["--vfs", "2", "--vf", "0:mac=02:00:00:00:88:00,vlan=100"]);
    let vfs = vf_addrs(&pfa);
    let token = token_of(&m);
    let mut tp = Command::new("dpdk-testpmd");
    tp.args(["-l", "0,1", "-n", "1", "--in-memory", "-a", &vfs[0]])
        .arg(format!("--vfio-vf-token={token}"))
        .args([
            "--",
            "--forward-mode=macswap",
            "--auto-start",
            "--stats-period",
            "2",
        ]);
    let tp = Manager::with_limit(tp, PathBuf::new(), PathBuf::new(), Duration::from_secs(300));
    // Started: a link event, the interactive prompt, or (with --stats-period, which has no
    // prompt) its first statistics; one wait for any of them.
    assert!(
        tp.wait_line(
            |l| l.contains("Port 0: link state change event")
                || l.contains("Press enter")
                || l.contains("Port statistics"),
            DEADLINE
        ),
        "testpmd did not start:\n{}",
        tp.output()
    );
    assert!(
        m.wait_line(|l| l.contains("event VF 0: message 0x0005 done"), DEADLINE),
        "SET_LPE (1526) not accepted:\n{}",
        m.output()
    );
    let mut wire = Port::open(&env("OXPMD_PORT1"), 2).unwrap();
    let wpool = pool_for(&wire, "wire", 1024);
    let (mut wrx, mut wtx) = start(&mut wire, &wpool);
    wire.wait_link_up(DEADLINE).unwrap();
    let wmac = wire.mac_addr();
    let vmac: MacAddr = "02:00:00:00:88:00".parse().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    drain(&mut wrx);
    // Tagged 100 to the VF: testpmd swaps the MACs, sends back; the PF re-tags with 100.
    let frames: Vec<_> = (0..40).map(|i| tagged(vmac, wmac, 100, 21, i)).collect();
    send_raw(&mut wtx, &wpool, &frames);
    let (with, without) = receive_vlan(&mut wrx, 21, 100, Duration::from_secs(10));
    assert_eq!((with, without), (40, 0), "macswap through port VLAN 100");
    // Untagged, or another VLAN: never reaches the VF, so nothing comes back.
    send(&mut wtx, &wpool, vmac, wmac, 22, 20);
    let frames: Vec<_> = (0..20).map(|i| tagged(vmac, wmac, 200, 23, i)).collect();
    send_raw(&mut wtx, &wpool, &frames);
    assert_eq!(receive_vlan(&mut wrx, 22, 100, Duration::from_secs(1)), (0, 0));
    assert_eq!(receive_vlan(&mut wrx, 23, 100, Duration::from_secs(1)), (0, 0));
    let _ = m.has_line(|l| l.contains("refused"));
    assert!(
        !m.has_line(|l| l.contains("VF 0: message 0x0005 refused")),
        "SET_LPE refused:\n{}",
        m.output()
    );
    eprintln!("{}", vf_ok(&["stats", &pfa]));
    let st = vf_json(&["stats", &pfa, "1"]);
    assert_eq!(st["stats"][0]["rx_packets"], 0, "VF 1 received something");
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(tp.pid().to_string())
        .status();
    let (_, out) = tp.wait_exit();
    assert!(
        out.contains("Done") || out.contains("Bye"),
        "testpmd did not stop cleanly:\n{out}"
    );
    drop((wrx, wtx));
    drop(wire);
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn a_vf_is_handed_to_an_unprivileged_uid_without_the_token() {
    init_log();
    let pfa = pf();
    std::fs::create_dir_all(DIR).unwrap();
    let m = serve(&[
        "--vfs",
        "2",
        "--vf",
        "0:mac=02:00:00:00:99:00",
        "--allow",
        "0:1000,0",
        "--socket-group",
        "1000",
    ]);
    // The token never leaves the service: the file is not needed any more.
    std::fs::remove_file(&m.token_file).unwrap();
    let client = |uid: &str, port: &str, extra: &[&str]| {
        let mut c = Command::new("prlimit");
        c.args([
            "--memlock=unlimited:unlimited",
            "setpriv",
            "--reuid",
            uid,
            "--regid",
            uid,
            "--clear-groups",
        ])
        .arg(example("vf-service-client"))
        .args(["--port", port])
        .args(extra)
        .env_remove("OXPMD_VF_TOKEN_FILE")
        .env_remove("OXPMD_VF_TOKEN");
        c
    };
    let spec = format!("vf-service:{}:0", socket().display());
    // A uid outside the socket's group cannot even connect: the error says what the socket
    // allows, who the caller is, and the fix.
    let out = run_bounded(
        "vf-service-client as uid 1001",
        &mut client("1001", &spec, &[]),
        COMMAND_LIMIT,
    );
    let e = String::from_utf8_lossy(&out.stderr);
    eprintln!("uid 1001: {e}");
    assert!(!out.status.success(), "{e}");
    for want in [
        "permission denied",
        "mode 0660, owner uid 0, group gid 1000",
        "runs as uid 1001, gid 1001",
        "--socket-group GROUP",
        "run as the owner",
    ] {
        assert!(e.contains(want), "`{want}` missing: {e}");
    }
    // A VF not allowed to 1000: refused by the service.
    let out = run_bounded(
        "vf-service-client for VF 1",
        &mut client("1000", &format!("vf-service:{}:1", socket().display()), &[]),
        COMMAND_LIMIT,
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("allow list"), "{e}");

    let mut wire = Port::open(&env("OXPMD_PORT1"), 2).unwrap();
    let wpool = pool_for(&wire, "wire", 2048);
    let (mut wrx, mut wtx) = start(&mut wire, &wpool);
    wire.wait_link_up(DEADLINE).unwrap();
    let wmac = wire.mac_addr();
    let vmac: MacAddr = "02:00:00:00:99:00".parse().unwrap();
    let c = client(
        "1000",
        &spec,
        &[
            "--send",
            "40",
            "--dst",
            &wmac.to_string(),
            "--receive",
            "40",
            "--timeout",
            "40",
        ],
    );
    let mut child = Manager::with_limit(c, PathBuf::new(), PathBuf::new(), Duration::from_secs(180));
    assert!(
        child.wait_line(|l| l.contains("vf-service-client: opened"), DEADLINE),
        "the client did not open its VF:\n{}",
        child.output()
    );
    // Held: a second client for the same VF is refused.
    let r = raw(b"{\"op\":\"open\",\"vf\":0}\n");
    assert_eq!(r["error"]["kind"], "busy", "{r}");
    let show = vf_json(&["show", &pfa, "0"]);
    assert_eq!(show["vf"]["holder_uid"], 1000);
    // Wire <-> the unprivileged VF: frames of EtherType 0x88B6.
    let mut from_vf = 0;
    let mut seq = 0u32;
    let t = Instant::now();
    let mut b = Burst::new();
    while child.alive() && t.elapsed() < Duration::from_secs(60) {
        let mut f = vec![0u8; 96];
        f[0..6].copy_from_slice(&vmac.0);
        f[6..12].copy_from_slice(&wmac.0);
        f[12..14].copy_from_slice(&0x88B6u16.to_be_bytes());
        f[14..18].copy_from_slice(&seq.to_be_bytes());
        seq += 1;
        send_raw(&mut wtx, &wpool, &[f]);
        while wrx.rx_burst(&mut b) > 0 {
            from_vf += b
                .drain()
                .filter(|p| {
                    p.data().len() >= 14 && p.data()[6..12] == vmac.0 && p.data()[12..14] == [0x88, 0xB6]
                })
                .count();
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    let (ok, out) = child.wait_exit();
    assert!(ok, "the unprivileged client failed:\n{out}");
    assert!(out.contains("vf-service-client: received 40"), "{out}");
    assert_eq!(from_vf, 40, "frames from the handed-over VF on the wire");
    // Its disconnect released and reset the VF.
    assert!(
        m.wait_line(|l| l.contains("VF 0 released (reset)"), DEADLINE),
        "{}",
        m.output()
    );
    assert!(m.wait_line(|l| l.contains("event VF 0: function reset"), DEADLINE));
    assert!(m.has_line(|l| l.contains("handed over to uid 1000")));
    drop((wrx, wtx));
    drop(wire);
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
}
