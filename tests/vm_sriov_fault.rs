//! Faults around the PF service (`oxpmd sriov serve`): a VF process killed with SIGKILL while
//! its VF forwards. The service must notice the dead client (its socket closes), reset the VF
//! and give it out again; a new process then opens the same VF and receives every frame; no
//! DMAR fault is logged on the way.
//!
//! Topology `pair`: the service holds port 0's PF; port 1 is the wire peer, driven by our igb
//! driver in this process.
//!
//! vm-topology: pair

#[path = "../pmd/tests/vm_sriov_common/mod.rs"]
mod common;
mod fault_checks;
mod sriov_service;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use fault_checks::{dmar_faults_since, kernel_log};
use oxpmd::pmd::{Burst, MacAddr, Port};
use sriov_service::*;

const VF_MAC: &str = "02:00:00:00:77:00";

/// `vf-service-client` on VF 0 of the service, as root, with `extra` arguments.
fn client(extra: &[&str]) -> Command {
    let mut c = Command::new(example("vf-service-client"));
    c.args(["--port", &format!("vf-service:{}:0", socket().display())])
        .args(extra)
        .env_remove("OXPMD_VF_TOKEN_FILE")
        .env_remove("OXPMD_VF_TOKEN");
    c
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn a_vf_client_killed_mid_traffic_frees_its_vf_which_opens_again() {
    init_log();
    let log_start = kernel_log().len();
    let m = serve(&["--vfs", "1", "--vf", &format!("0:mac={VF_MAC}"), "--allow", "0:0"]);
    let mut wire = Port::open(&env("OXPMD_PORT1"), 2).unwrap();
    let wpool = pool_for(&wire, "wire", 2048);
    let (mut wrx, mut wtx) = start(&mut wire, &wpool);
    wire.wait_link_up(DEADLINE).unwrap();
    let (wmac, vmac): (MacAddr, MacAddr) = (wire.mac_addr(), VF_MAC.parse().unwrap());
    let frame_to_vf = |seq: u32| {
        let mut f = vec![0u8; 96];
        f[0..6].copy_from_slice(&vmac.0);
        f[6..12].copy_from_slice(&wmac.0);
        f[12..14].copy_from_slice(&0x88B6u16.to_be_bytes());
        f[14..18].copy_from_slice(&seq.to_be_bytes());
        f
    };

    // The first client sends to the wire until it is killed.
    let first = client(&["--send", "100000", "--dst", &wmac.to_string(), "--timeout", "120"]);
    let first = Manager::with_limit(first, PathBuf::new(), PathBuf::new(), Duration::from_secs(180));
    assert!(
        first.wait_line(|l| l.contains("vf-service-client: opened"), DEADLINE),
        "the first client did not open its VF:\n{}",
        first.output()
    );
    assert_eq!(vf_json(&["show", &pf(), "0"])["vf"]["holder_uid"], 0);
    let mut seq = 0u32;
    let mut from_vf = 0usize;
    let mut b = Burst::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) && from_vf < 200 {
        while wrx.rx_burst(&mut b) > 0 {
            from_vf += b
                .drain()
                .filter(|p| p.data().len() >= 12 && p.data()[6..12] == vmac.0)
                .count();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(from_vf > 0, "the first client's frames reach the wire");
    // SAFETY: a plain kill(2) of our own child's pid; no memory is involved.
    let r = unsafe { libc::kill(first.pid() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(r, 0, "kill -9 of the first client");
    let killed_at = Instant::now();
    let (ok, out) = first.wait_exit();
    assert!(!ok, "the killed client did not fail:\n{out}");
    println!("kill -9 of the VF client while it sends ({from_vf} of its frames seen on the wire)");

    // The service sees the socket close, resets the VF and frees it.
    let t = Instant::now();
    loop {
        let show = vf_json(&["show", &pf(), "0"]);
        if show["vf"]["holder_uid"].is_null() {
            break;
        }
        assert!(
            t.elapsed() < DEADLINE,
            "VF 0 still held after its client died: {show}\n{}",
            m.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "VF 0 free again {:.0} ms after the kill",
        killed_at.elapsed().as_secs_f64() * 1e3
    );

    // A new process opens the same VF and receives every frame sent to it.
    let second = client(&["--receive", "40", "--timeout", "60"]);
    let mut second = Manager::with_limit(second, PathBuf::new(), PathBuf::new(), Duration::from_secs(120));
    assert!(
        second.wait_line(|l| l.contains("vf-service-client: opened"), DEADLINE),
        "the second client did not open the VF:\n{}\nservice:\n{}",
        second.output(),
        m.output()
    );
    let reopened = killed_at.elapsed();
    let t = Instant::now();
    while second.alive() && t.elapsed() < Duration::from_secs(60) {
        send_raw(&mut wtx, &wpool, &[frame_to_vf(seq)]);
        seq += 1;
        std::thread::sleep(Duration::from_millis(3));
    }
    let (ok, out) = second.wait_exit();
    assert!(ok, "the second client failed:\n{out}");
    assert!(out.contains("vf-service-client: received 40"), "{out}");
    println!(
        "the VF reopened {:.0} ms after the kill and received 40 frames",
        reopened.as_secs_f64() * 1e3
    );
    let faults = dmar_faults_since(log_start);
    assert!(faults.is_empty(), "DMAR faults: {faults:?}");
    let (ok, out) = m.stop();
    assert!(ok, "the service failed:\n{out}");
}
