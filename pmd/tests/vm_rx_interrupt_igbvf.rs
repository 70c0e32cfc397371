//! vm-topology: pair
//!
//! RX interrupts of our igbvf on a VF of our userspace PF (`examples/sriov-pf`, port 0), fed by
//! our igb on port 1 across the link: bursts of test frames to the VF's MAC with idle gaps between them, sent
//! before the wait starts (the look after the unmask must find them) or while it sleeps (the VF's
//! MSI-X vector 0 must wake it). Every frame arrives, none is stranded, an idle gap does not wake
//! the wait. Run with `cargo xtask vm test vm_rx_interrupt_igbvf`.

mod vm_link_common;
mod vm_sriov_common;

use std::time::{Duration, Instant};

use oxpmd_pmd::{Burst, MacAddr, RxQueue, wait_for_rx};

/// Hang guard for one wait with frames on the way (never a speed assertion).
const WAKE_BOUND: Duration = Duration::from_secs(10);
/// An idle gap: the wait must time out with nothing.
const IDLE: Duration = Duration::from_millis(300);
/// How long the sender of a "while it sleeps" burst waits before sending.
const SEND_DELAY: Duration = Duration::from_millis(100);

/// Test frames of `round` (their tag) the VF holds now.
fn drain(rx: &mut RxQueue, round: u16) -> usize {
    let mut b = Burst::new();
    let mut got = 0;
    while rx.rx_burst(&mut b) > 0 {
        for p in b.drain() {
            if let Some((tag, _)) = vm_sriov_common::parse(p.data()) {
                assert_eq!(tag, round, "a frame of another round");
                got += 1;
            }
        }
    }
    got
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn a_vf_sleeps_on_its_rx_interrupt_and_strands_no_frame() {
    vm_sriov_common::init_log();
    let pf = vm_link_common::env("OXPMD_PORT0");
    let (m, vf, _vpool, mut rx, _vtx) = vm_sriov_common::started_vf(&pf);
    let vmac = vf.mac_addr();
    let (mut wire, wpool) = vm_link_common::open_started(1);
    let (_wrx, mut wtx) = wire.take_queues().unwrap();
    let wtx = &mut wtx[0];
    let wmac: MacAddr = wire.mac_addr();
    rx.enable_rx_interrupt().unwrap();
    drain(&mut rx, u16::MAX);
    let sizes = [1usize, 7, 32, 100, 3, 64];
    let (mut total, mut latency) = (0usize, Vec::new());
    for round in 0..8u16 {
        let n = sizes[round as usize % sizes.len()];
        let idle = wait_for_rx(&mut [&mut rx], IDLE).unwrap();
        assert!(idle.is_empty(), "round {round}: woken in an idle gap");
        let early = round % 2 == 0;
        let mut got = 0;
        std::thread::scope(|s| {
            let wtx = &mut *wtx;
            let wpool = &wpool;
            let sent_at = if early {
                vm_sriov_common::send(wtx, wpool, vmac, wmac, round, n as u32);
                std::thread::sleep(SEND_DELAY);
                None
            } else {
                s.spawn(move || {
                    std::thread::sleep(SEND_DELAY);
                    vm_sriov_common::send(wtx, wpool, vmac, wmac, round, n as u32);
                });
                Some(Instant::now() + SEND_DELAY)
            };
            while got < n {
                let t = Instant::now();
                let ready = wait_for_rx(&mut [&mut rx], WAKE_BOUND).unwrap();
                assert!(
                    !ready.is_empty(),
                    "round {round}: {got}/{n} frames, then nothing woke the wait for {WAKE_BOUND:?} \
                     (stranded: {})",
                    drain(&mut rx, round)
                );
                if got == 0
                    && let Some(at) = sent_at
                {
                    latency.push(Instant::now().saturating_duration_since(at.max(t)));
                }
                got += drain(&mut rx, round);
            }
        });
        assert_eq!(got, n, "round {round}: frame count");
        total += n;
    }
    vm_link_common::report(&format!(
        "VF RX interrupts: {total} frames over 8 rounds, no wake-up in the idle gaps; wake-up after \
         the first frame of a burst sent while sleeping: {:?}",
        latency
    ));
    drop((rx, _vtx, vf));
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
}
