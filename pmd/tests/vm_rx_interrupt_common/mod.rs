//! What the RX-interrupt VM tests share (igb pair, virtio-net against igb): bursts of 1 to 100
//! frames alternating direction with idle gaps between them, sent either before the wait starts
//! (the frames are already in the ring when it arms: the look after arming must find them) or
//! while it sleeps (the MSI-X vector must wake it). Every frame must arrive, none may be
//! stranded, and an idle gap must not wake the wait.
// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use oxpmd_dma::{Mempool, Packet};
use oxpmd_pmd::{Burst, MacAddr, Port, RxQueue, TxQueue, wait_for_rx};

use crate::vm_link_common::report;

/// Hang guard for one wait with frames on the way (never a speed assertion).
const WAKE_BOUND: Duration = Duration::from_secs(10);
/// An idle gap: the wait must time out with nothing.
const IDLE: Duration = Duration::from_millis(300);
/// Early wake-ups with no frame allowed in the idle gaps of the whole test (see the gap).
const MAX_STALE_WAKES: u32 = 2;
/// How long the sender of a "while it sleeps" burst waits before sending.
const SEND_DELAY: Duration = Duration::from_millis(100);

pub fn send(tx: &mut TxQueue, pool: &Mempool, dst: MacAddr, src: MacAddr, round: u32, n: usize) {
    let mut burst = Burst::new();
    let t = Instant::now();
    for seq in 0..n as u32 {
        let mut f = vec![0u8; 64];
        f[0..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f[12..14].copy_from_slice(&0x88B5u16.to_be_bytes());
        f[14..18].copy_from_slice(&round.to_be_bytes());
        f[18..22].copy_from_slice(&seq.to_be_bytes());
        let mut p: Packet = pool.alloc().expect("a TX buffer");
        p.extend_from_slice(&f).unwrap();
        burst.push(p).unwrap();
        if burst.is_full() || seq + 1 == n as u32 {
            while !burst.is_empty() {
                tx.tx_burst(&mut burst);
                tx.reclaim();
                assert!(t.elapsed() < WAKE_BOUND, "TX stalled");
            }
        }
    }
}

/// Takes every frame the queue holds; checks each belongs to `round`.
pub fn drain(rx: &mut RxQueue, round: u32) -> usize {
    let mut burst = Burst::new();
    let mut got = 0;
    loop {
        let n = rx.rx_burst(&mut burst);
        if n == 0 {
            return got;
        }
        for p in burst.drain() {
            let d = p.data();
            assert_eq!(&d[12..14], &0x88B5u16.to_be_bytes(), "a foreign frame");
            assert_eq!(
                u32::from_be_bytes(d[14..18].try_into().unwrap()),
                round,
                "a frame of another round"
            );
            got += 1;
        }
    }
}

/// One side of the test: a port's first queue pair, its pool and its MAC address.
pub struct Side<'a> {
    pub rx: RxQueue,
    pub tx: TxQueue,
    pub pool: &'a Mempool,
    pub mac: MacAddr,
}

impl<'a> Side<'a> {
    /// Takes the first queue pair of a started `port`.
    pub fn first_pair(port: &mut Port, pool: &'a Mempool, mac: MacAddr) -> Side<'a> {
        let (mut rx, mut tx) = port.take_queues().expect("the port's queues");
        Side {
            rx: rx.remove(0),
            tx: tx.remove(0),
            pool,
            mac,
        }
    }
}

/// The whole test between sides 0 and 1; `names` name them in the figures line (the wake-up
/// latencies are per receiving side).
pub fn bursts_and_idle_gaps(s0: Side<'_>, s1: Side<'_>, names: [&str; 2]) {
    let (mut rx0, mut tx0, pool0, mac0) = (s0.rx, s0.tx, s0.pool, s0.mac);
    let (mut rx1, mut tx1, pool1, mac1) = (s1.rx, s1.tx, s1.pool, s1.mac);
    // Not enabled yet: a wait is refused, not a silent sleep.
    let refused = wait_for_rx(&mut [&mut rx0], Duration::from_millis(1)).expect_err("refused");
    report(&format!("wait before enable_rx_interrupt refused: {refused}"));
    rx0.enable_rx_interrupt().unwrap();
    rx1.enable_rx_interrupt().unwrap();
    drain(&mut rx0, u32::MAX);
    drain(&mut rx1, u32::MAX);
    let sizes = [1usize, 7, 32, 100, 3, 64];
    let (mut waits, mut total, mut idle_ok) = (0u32, 0usize, 0u32);
    let mut stale_wakes = 0u32;
    let mut sleeping_latency = [Vec::new(), Vec::new()];
    for round in 0..12u32 {
        let n = sizes[round as usize % sizes.len()];
        let forward = round % 2 == 0;
        let early = round % 4 < 2;
        // The idle gap first: nothing is on the way, so the wait must time out empty. One early
        // wake-up with no frame is allowed now and then (an interrupt of the last burst whose
        // signal reached the eventfd after the driver last read it: the host delivers it
        // asynchronously), at most MAX_STALE_WAKES over the test; a driver that left its cause
        // set would wake in every gap.
        let t = Instant::now();
        let mut idle = wait_for_rx(&mut [&mut rx0, &mut rx1], IDLE).unwrap();
        if !idle.is_empty() && stale_wakes < MAX_STALE_WAKES {
            let frames = drain(&mut rx0, round) + drain(&mut rx1, round);
            assert_eq!(
                frames, 0,
                "round {round}: {frames} frames in an idle gap (woken for {idle:?})"
            );
            stale_wakes += 1;
            report(&format!(
                "round {round}: an early wake-up for {idle:?} with no frame in the idle gap"
            ));
            idle = wait_for_rx(&mut [&mut rx0, &mut rx1], IDLE.saturating_sub(t.elapsed())).unwrap();
        }
        assert!(idle.is_empty(), "round {round}: woken in an idle gap: {idle:?}");
        assert!(t.elapsed() >= IDLE);
        idle_ok += 1;
        let (tx, pool, dst, src, target) = if forward {
            (&mut tx0, pool0, mac1, mac0, 1usize)
        } else {
            (&mut tx1, pool1, mac0, mac1, 0usize)
        };
        let mut got = 0usize;
        std::thread::scope(|s| {
            let sent_at = if early {
                send(tx, pool, dst, src, round, n);
                std::thread::sleep(SEND_DELAY);
                None
            } else {
                s.spawn(move || {
                    std::thread::sleep(SEND_DELAY);
                    send(tx, pool, dst, src, round, n);
                });
                Some(Instant::now() + SEND_DELAY)
            };
            while got < n {
                let t = Instant::now();
                let ready = wait_for_rx(&mut [&mut rx0, &mut rx1], WAKE_BOUND).unwrap();
                waits += 1;
                assert!(
                    !ready.is_empty(),
                    "round {round}: {got}/{n} frames, then nothing woke the wait for {WAKE_BOUND:?} \
                     (stranded: {} in the ring)",
                    drain(if target == 1 { &mut rx1 } else { &mut rx0 }, round)
                );
                if got == 0 {
                    if let Some(at) = sent_at {
                        sleeping_latency[target].push(Instant::now().saturating_duration_since(at.max(t)));
                    }
                }
                assert!(
                    ready.contains(&target),
                    "round {round}: woken for {ready:?}, frames go to {target}"
                );
                got += drain(if target == 1 { &mut rx1 } else { &mut rx0 }, round);
            }
        });
        assert_eq!(got, n, "round {round}: frame count");
        // Nothing more for this round, on either queue.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            drain(&mut rx0, round) + drain(&mut rx1, round),
            0,
            "round {round}: extra frames"
        );
        total += n;
    }
    for l in &mut sleeping_latency {
        l.sort();
    }
    report(&format!(
        "{} <-> {}: RX interrupts: 12 rounds, {total} frames, all received, {waits} waits with frames, \
         {idle_ok} idle gaps without a wake-up; wake-up after the first frame of a burst sent while \
         sleeping (sorted): received by {}: {:?}; received by {}: {:?}",
        names[0], names[1], names[0], sleeping_latency[0], names[1], sleeping_latency[1]
    ));
}
