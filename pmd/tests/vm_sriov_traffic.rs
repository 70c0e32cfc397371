//! vm-topology: pair
//!
//! SR-IOV from userspace, the datapath: the PF manager (`examples/sriov-pf`) serves port 0's
//! VFs; the igbvf driver opens them with the token and
//! - forwards VF to VF through the PF's local switching, VF to the wire (port 1, port 0's peer)
//!   and wire to VF (exactly once each, nothing leaks to the wrong place);
//! - runs pktgen on VF ports as a separate process with the token file;
//! - the kernel igbvf driver on a VF (`--vf 1:kernel`) comes up against our PF with the MAC our
//!   policy gave it and exchanges frames with port 1;
//! - a hostile VF (malformed and abusive mailbox traffic) is contained: the PF stays up, every
//!   refusal is logged, the other VF's traffic and counters are unaffected.
//!
//! These need the VF's registers to be reachable: QEMU 10.0.2 truncates igb VF BAR addresses
//! above 4 GiB, where the guest kernel puts them by default; the VM must be started with
//! `-global q35-pcihost.pci-hole64-size=0` (then all pass), otherwise every test here fails at
//! the VF open with `IgbvfError::NotDecoded` (see docs/sriov.md).
//! Run with `cargo xtask vm test -p oxpmd-pmd vm_sriov_traffic` (the examples must be built).

mod vm_sriov_common;

use std::process::Command;
use std::time::{Duration, Instant};

use oxpmd_pmd::drivers::igbvf::IgbvfDriver;
use oxpmd_pmd::sriov::mailbox::{MSG_NACK, VfRequest};
use oxpmd_pmd::{MacAddr, OpenOptions, Port};
use oxpmd_vfio::{PciAddress, VfToken};
use vm_sriov_common::*;

fn pf() -> String {
    env("OXPMD_PORT0")
}

/// pktgen sends 400 frames at 2000/s: seconds; this bound only stops a hang.
const PKTGEN_LIMIT: Duration = Duration::from_secs(180);

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn vf_traffic_local_switching_and_wire() {
    init_log();
    let m = Manager::start(&["--pf", &pf(), "--vfs", "2"]);
    let vfs = vf_addrs(&pf());
    let token = Some(VfToken::load(&m.token_file).unwrap().expose());
    let mut vf0 = open_port(&vfs[0], 0, token.clone()).unwrap_or_else(|e| panic!("VF 0: {e}"));
    let mut vf1 = open_port(&vfs[1], 1, token).unwrap_or_else(|e| panic!("VF 1: {e}"));
    let mac0 = vf0.mac_addr();
    let mac1 = vf1.mac_addr();
    assert_eq!(mac0, m.vf_mac(0), "the MAC comes from the PF's policy");
    assert_eq!(mac1, m.vf_mac(1));
    // An untrusted VF cannot change its MAC.
    let e = vf0
        .set_mac_addr(MacAddr([2, 0x66, 0, 0, 0, 1]))
        .expect_err("MAC change refused");
    assert!(e.to_string().contains("refused"), "{e}");
    // One pool for both VFs (the igbvf ports of a process share one IOMMU container).
    let vpool = pool_for(&vf0, "vfs", 2048);
    let (mut rx0, mut tx0) = start(&mut vf0, &vpool);
    let (mut rx1, tx1) = start(&mut vf1, &vpool);
    let mut wire = Port::open(&env("OXPMD_PORT1"), 2).unwrap_or_else(|e| panic!("port 1: {e}"));
    let wpool = pool_for(&wire, "wire", 2048);
    let (mut wrx, mut wtx) = start(&mut wire, &wpool);
    let wmac = wire.mac_addr();
    wire.wait_link_up(DEADLINE).unwrap();
    vf0.wait_link_up(DEADLINE).unwrap();
    drain(&mut wrx);

    const N: u32 = 200;
    // VF 0 -> VF 1: local switching, nothing reaches the wire.
    send(&mut tx0, &vpool, mac1, mac0, 1, N);
    let got = receive(&mut rx1, 1, N as usize, DEADLINE);
    assert!(exact(got.clone(), N), "VF0->VF1: {} of {N}", got.len());
    let leaked = receive(&mut wrx, 1, 1, Duration::from_millis(500));
    assert!(
        leaked.is_empty(),
        "{} VF-to-VF frames leaked to the wire",
        leaked.len()
    );
    // VF 0 -> the wire.
    send(&mut tx0, &vpool, wmac, mac0, 2, N);
    let got = receive(&mut wrx, 2, N as usize, DEADLINE);
    assert!(exact(got.clone(), N), "VF0->wire: {} of {N}", got.len());
    // The wire -> VF 1 only.
    send(&mut wtx, &wpool, mac1, wmac, 3, N);
    let got = receive(&mut rx1, 3, N as usize, DEADLINE);
    assert!(exact(got.clone(), N), "wire->VF1: {} of {N}", got.len());
    let wrong = receive(&mut rx0, 3, 1, Duration::from_millis(300));
    assert!(wrong.is_empty(), "VF 0 received {} frames for VF 1", wrong.len());

    let s0 = vf0.stats().unwrap();
    let s1 = vf1.stats().unwrap();
    assert!(s0.opackets >= u64::from(2 * N), "{s0:?}");
    assert!(s1.ipackets >= u64::from(2 * N), "{s1:?}");
    drop((rx0, tx0, rx1, tx1, vf0, vf1));
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
    // Closing a VF resets it (FLR): the PF saw it and took the pool down.
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("counters VF 1:"))
        .unwrap_or_default();
    assert!(line.contains("resets=1") && line.contains("nacked=0"), "{line}");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn pktgen_runs_on_vf_ports_with_the_token_file() {
    init_log();
    let m = Manager::start(&["--pf", &pf(), "--vfs", "2"]);
    let vfs = vf_addrs(&pf());
    let out = run_bounded(
        "pktgen",
        Command::new(example("pktgen"))
            .args([
                "--tx-port",
                &vfs[0],
                "--rx-port",
                &vfs[1],
                "--count",
                "400",
                "--rate",
                "2000",
                "--expect-all",
                "--tx-stall",
                "10",
            ])
            .env("OXPMD_VF_TOKEN_FILE", &m.token_file),
        PKTGEN_LIMIT,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "pktgen VF0 -> VF1 failed:\n{text}");
    assert!(text.contains("pktgen-result:"), "{text}");
    // A VF port and an igb port in one process share one IOMMU container (and pool): VF 0 to
    // the wire (port 1).
    let out = run_bounded(
        "pktgen",
        Command::new(example("pktgen"))
            .args([
                "--tx-port",
                &vfs[0],
                "--rx-port",
                &env("OXPMD_PORT1"),
                "--count",
                "400",
                "--rate",
                "2000",
                "--expect-all",
                "--tx-stall",
                "10",
            ])
            .env("OXPMD_VF_TOKEN_FILE", &m.token_file),
        PKTGEN_LIMIT,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "pktgen VF0 -> port 1 failed:\n{text}");
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
}

fn modprobe(m: &str) {
    let out = run_bounded(
        &format!("modprobe {m}"),
        Command::new(env("OXPMD_VM_MODPROBE")).arg(m),
        COMMAND_LIMIT,
    );
    assert!(
        out.status.success(),
        "modprobe {m}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sys(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn kernel_igbvf_comes_up_against_our_pf() {
    init_log();
    modprobe("igbvf");
    let m = Manager::start(&[
        "--pf",
        &pf(),
        "--vfs",
        "2",
        "--vf",
        "1:kernel,mac=02:00:00:00:55:01",
    ]);
    let vfs = vf_addrs(&pf());
    assert!(
        m.wait_line(|l| l.contains("bound to the kernel igbvf driver"), DEADLINE),
        "{}",
        m.output()
    );
    assert!(
        m.wait_line(
            |l| l.contains("event VF 1: ready, MAC 02:00:00:00:55:01"),
            DEADLINE
        ),
        "the kernel driver did the reset handshake:\n{}",
        m.output()
    );
    let netdir = format!("/sys/bus/pci/devices/{}/net", vfs[1]);
    let ifname = std::fs::read_dir(&netdir)
        .expect("the kernel VF has a netdev")
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        sys(&format!("/sys/class/net/{ifname}/address")),
        "02:00:00:00:55:01"
    );
    let st = Command::new("ip")
        .args(["link", "set", "dev", &ifname, "up"])
        .status()
        .unwrap();
    assert!(st.success());
    let t = Instant::now();
    while sys(&format!("/sys/class/net/{ifname}/operstate")) != "up" && t.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        sys(&format!("/sys/class/net/{ifname}/operstate")),
        "up",
        "link up"
    );
    // Both directions with the kernel's own stack: the kernel VF resolves 10.77.0.2 (ARP
    // broadcast out of the VF, to the wire), port 1 answers the ARP (wire to the VF), and the
    // kernel then sends ICMP echo requests to port 1's MAC, which proves it received the reply.
    let mut wire = Port::open(&env("OXPMD_PORT1"), 2).unwrap();
    let wpool = pool_for(&wire, "wire", 1024);
    let (mut wrx, mut wtx) = start(&mut wire, &wpool);
    let wmac = wire.mac_addr();
    wire.wait_link_up(DEADLINE).unwrap();
    let vmac: MacAddr = "02:00:00:00:55:01".parse().unwrap();
    let st = Command::new("ip")
        .args(["addr", "add", "10.77.0.1/24", "dev", &ifname])
        .status()
        .unwrap();
    assert!(st.success());
    let ping = ChildGuard::spawn(
        "busybox ping",
        Command::new("busybox").args(["ping", "-c", "30", "-W", "1", "10.77.0.2"]),
        COMMAND_LIMIT,
    );
    let mut arp_requests = 0;
    let mut icmp_requests = 0;
    let mut burst = oxpmd_pmd::Burst::new();
    let t = Instant::now();
    while icmp_requests < 3 && t.elapsed() < DEADLINE {
        if wrx.rx_burst(&mut burst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        for p in burst.drain() {
            let d = p.data();
            if d.len() < 42 || d[6..12] != vmac.0 {
                continue;
            }
            let ethertype = u16::from_be_bytes([d[12], d[13]]);
            if ethertype == 0x0806 && d[21] == 1 && d[38..42] == [10, 77, 0, 2] {
                arp_requests += 1;
                let mut r = vec![0u8; 60];
                r[0..6].copy_from_slice(&vmac.0);
                r[6..12].copy_from_slice(&wmac.0);
                r[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
                r[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
                r[22..28].copy_from_slice(&wmac.0);
                r[28..32].copy_from_slice(&[10, 77, 0, 2]);
                r[32..38].copy_from_slice(&vmac.0);
                r[38..42].copy_from_slice(&[10, 77, 0, 1]);
                let mut q = wpool.alloc().unwrap();
                q.extend_from_slice(&r).unwrap();
                let mut b = oxpmd_pmd::Burst::new();
                b.push(q).unwrap();
                wtx.tx_burst(&mut b);
            } else if ethertype == 0x0800 && d[0..6] == wmac.0 && d[23] == 1 {
                icmp_requests += 1;
            }
        }
    }
    drop(ping);
    assert!(
        arp_requests >= 1,
        "no ARP request from the kernel VF reached the wire"
    );
    assert!(
        icmp_requests >= 3,
        "the kernel VF did not act on our ARP reply ({arp_requests} ARP, {icmp_requests} ICMP)"
    );
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn hostile_vf_is_contained() {
    init_log();
    let m = Manager::start(&["--pf", &pf(), "--vfs", "2"]);
    let vfs = vf_addrs(&pf());
    let token = VfToken::load(&m.token_file).unwrap().expose();
    let opts = |id| OpenOptions {
        port_id: id,
        vf_token: Some(token.clone()),
    };
    let hostile = IgbvfDriver::open(PciAddress::parse(&vfs[0]).unwrap(), &opts(0))
        .unwrap_or_else(|e| panic!("VF 0: {e}"));
    let mut victim = Port::with_driver(
        Box::new(IgbvfDriver::open(PciAddress::parse(&vfs[1]).unwrap(), &opts(1)).unwrap()),
        1,
    );
    let vmac = victim.mac_addr();
    let vpool = pool_for(&victim, "victim", 1024);
    let (_vrx, mut vtx) = start(&mut victim, &vpool);
    let mut wire = Port::open(&env("OXPMD_PORT1"), 2).unwrap();
    let wpool = pool_for(&wire, "wire", 1024);
    let (mut wrx, _wtx) = start(&mut wire, &wpool);
    let wmac = wire.mac_addr();

    // The victim's traffic before.
    send(&mut vtx, &vpool, wmac, vmac, 1, 100);
    assert!(exact(receive(&mut wrx, 1, 100, DEADLINE), 100), "victim before");
    let victim_msgs_before = m.count_lines(|l| l.contains("event VF 1:"));

    // Abuse: unknown ids, PF-only flags, oversized counts (wrong lengths), MAC spoofing,
    // hundreds of VLAN adds, a message flood.
    let mut nacks = 0;
    let mut ask = |w: &[u32]| {
        if let Ok(r) = hostile.raw_request(w) {
            if r[0] & MSG_NACK != 0 {
                nacks += 1;
            }
        }
    };
    ask(&[0x0000_0077]);
    ask(&[0x8000_0002, 0, 0]);
    ask(&[0x00FF_0003]);
    ask(&[0x0100_0005, 9000]);
    ask(&VfRequest::SetMac(vmac).encode()[..3]);
    ask(&VfRequest::SetMac(MacAddr([2, 0xde, 0xad, 0, 0, 1])).encode()[..3]);
    ask(&VfRequest::SetLpe { max_frame: 65535 }.encode()[..2]);
    ask(&VfRequest::SetPromisc {
        unicast: true,
        multicast: false,
    }
    .encode()[..1]);
    for vid in 1..=300u16 {
        ask(&VfRequest::SetVlan { vid, add: true }.encode()[..2]);
    }
    for _ in 0..500 {
        ask(&[0x0000_0077]);
    }
    assert!(nacks >= 300, "the PF NACKed the abuse ({nacks})");

    // The PF is up, every kind of refusal was logged with the VF and why.
    let mut m = m;
    assert!(m.alive(), "the PF manager survived");
    for why in [
        "unknown message id",
        "PF-only flag",
        "hashes announced",
        "reserved bits",
        "not trusted",
        "max frame",
        "unicast promiscuous refused",
        "VLAN limit",
        "rate limit",
    ] {
        assert!(
            m.wait_line(|l| l.contains("VF 0: refused") && l.contains(why), DEADLINE),
            "no refusal logged for `{why}`:\n{}",
            m.output()
        );
    }
    // The victim: traffic and counters unaffected.
    send(&mut vtx, &vpool, wmac, vmac, 2, 100);
    assert!(exact(receive(&mut wrx, 2, 100, DEADLINE), 100), "victim after");
    assert_eq!(
        m.count_lines(|l| l.contains("event VF 1:")),
        victim_msgs_before,
        "no event for VF 1 during VF 0's abuse"
    );
    drop(hostile);
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("counters VF 1:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("nacked=0") && line.contains("rate_limited=0"),
        "{line}"
    );
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn vf_traffic_resumes_after_pf_restart() {
    init_log();
    let m = Manager::start(&["--pf", &pf(), "--vfs", "2"]);
    let vfs = vf_addrs(&pf());
    let token = Some(VfToken::load(&m.token_file).unwrap().expose());
    let mut vf0 = open_port(&vfs[0], 0, token).unwrap_or_else(|e| panic!("VF 0: {e}"));
    let mac0 = vf0.mac_addr();
    let vpool = pool_for(&vf0, "vf", 1024);
    let (_rx0, mut tx0) = start(&mut vf0, &vpool);
    let mut wire = Port::open(&env("OXPMD_PORT1"), 2).unwrap();
    let wpool = pool_for(&wire, "wire", 1024);
    let (mut wrx, _wtx) = start(&mut wire, &wpool);
    let wmac = wire.mac_addr();
    wire.wait_link_up(DEADLINE).unwrap();
    drain(&mut wrx);
    send(&mut tx0, &vpool, wmac, mac0, 1, 100);
    assert!(
        exact(receive(&mut wrx, 1, 100, DEADLINE), 100),
        "before the restart"
    );
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
    // A new manager takes the PF over with the saved token and state. vfio-pci resets the PF
    // when its last user closes it and when it is opened again, which (in QEMU's model, as on
    // the 82576) takes the VF's queues down: the manager reports them off, and the VF process
    // resets its VF (reopens its port); the restarted PF serves it with the saved MAC.
    let m = Manager::start(&["--pf", &pf(), "--vfs", "2", "--restart"]);
    assert!(
        m.has_line(|l| l.contains("VF 0: restored; its queues are off (RX) / off (TX)")),
        "{}",
        m.output()
    );
    drop((_rx0, tx0, vf0));
    let token = Some(VfToken::load(&m.token_file).unwrap().expose());
    let mut vf0 = open_port(&vfs[0], 0, token).unwrap_or_else(|e| panic!("VF 0 again: {e}"));
    assert_eq!(vf0.mac_addr(), mac0, "the restarted PF gave the saved MAC");
    let (_rx0, mut tx0) = start(&mut vf0, &vpool);
    send(&mut tx0, &vpool, wmac, mac0, 2, 100);
    let got = receive(&mut wrx, 2, 100, DEADLINE);
    assert!(exact(got.clone(), 100), "after the restart: {} of 100", got.len());
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
}
