//! Teardown races: the RX queue, the TX queue and the driver are dropped on three
//! threads at once. Each queue frees its buffers as soon as `stop_device` returns, so the fake
//! device records every return that happens while its reset has not completed (status not yet
//! read back 0). Before the fix, the stop was marked done before the reset ran: the losers
//! returned at once and freed their buffers while the winner was still resetting.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use oxpmd_dma::flush_thread_caches;

use super::fake::{Kind, Split, frame, packet};
use crate::adv_ring::HeapRingMemory;
use crate::burst::Burst;
use crate::drivers::virtio::queue::{Doorbell, VirtioRxQueue, VirtioTxQueue};
use crate::stats::QueueCounters;
use crate::vport::virtual_pool;

/// The device side of a reset that takes a while to complete.
#[derive(Default)]
struct ResettingDevice {
    /// Device status (nonzero: running; 0 once the reset completed).
    status: std::sync::atomic::AtomicU8,
    resets: std::sync::atomic::AtomicUsize,
    /// Stops that returned (so buffers were freed) while the device still ran.
    freed_while_running: std::sync::atomic::AtomicUsize,
}

impl ResettingDevice {
    /// Writes status 0 and polls until the device reads back 0; the device completes the reset
    /// after a few hundred polls, giving the other threads every chance to run meanwhile.
    fn reset(&self) -> bool {
        self.resets.fetch_add(1, Ordering::SeqCst);
        for _ in 0..200 {
            std::thread::yield_now();
        }
        self.status.store(0, Ordering::SeqCst);
        true
    }
}

#[derive(Clone)]
struct RacingBell {
    stop: Arc<crate::drivers::virtio::StopOnce>,
    dev: Arc<ResettingDevice>,
}

// SAFETY: returns the outcome of the one reset of the shared fake device, after it completed (the
// test counts any buffer freed while the fake still ran).
unsafe impl Doorbell for RacingBell {
    fn notify(&mut self) {}
    fn stop_device(&mut self) -> bool {
        let ok = self.stop.stop(|| self.dev.reset());
        // The queue frees its buffers right after this returns.
        if self.dev.status.load(Ordering::SeqCst) != 0 {
            self.dev.freed_while_running.fetch_add(1, Ordering::SeqCst);
        }
        ok
    }
}

#[test]
fn queues_and_driver_dropped_concurrently_free_nothing_before_the_reset_completes() {
    let pool = virtual_pool("vio-drop-race", 16 + 8 + 40, 0).unwrap();
    let rounds = 300;
    let mut freed_early = 0;
    for _ in 0..rounds {
        let dev = Arc::new(ResettingDevice::default());
        dev.status.store(0x0F, Ordering::SeqCst);
        let bell = RacingBell {
            stop: Arc::new(crate::drivers::virtio::StopOnce::new()),
            dev: dev.clone(),
        };
        let rxq = VirtioRxQueue::new(Split::ring(16), bell.clone(), &pool, 0, 0, false).unwrap();
        let mut txq = VirtioTxQueue::new(
            Split::ring(16),
            HeapRingMemory::new(16),
            bell.clone(),
            false,
            None,
        )
        .unwrap();
        let mut burst = Burst::new();
        for s in 0..8 {
            assert!(burst.push(packet(&pool, &frame(s, 64))).is_ok());
        }
        let mut c = QueueCounters::default();
        assert_eq!(txq.tx_burst(&mut burst, &mut c), 8, "8 packets left in flight");
        let start = Arc::new(std::sync::Barrier::new(3));
        let (s1, s2) = (start.clone(), start.clone());
        let a = std::thread::spawn(move || {
            s1.wait();
            drop(rxq);
        });
        let b = std::thread::spawn(move || {
            s2.wait();
            drop(txq);
        });
        // The driver's Drop: the same stop, then bus mastering off.
        start.wait();
        let mut driver = bell.clone();
        assert!(driver.stop_device());
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(dev.resets.load(Ordering::SeqCst), 1, "one reset per teardown");
        freed_early += dev.freed_while_running.load(Ordering::SeqCst);
    }
    assert_eq!(
        freed_early, 0,
        "a queue freed its buffers before the device reset completed"
    );
    flush_thread_caches();
    assert_eq!(pool.available(), pool.capacity(), "every buffer back");
}

#[test]
fn a_failed_stop_leaks_the_buffers_instead_of_freeing_them() {
    #[derive(Clone)]
    struct FailingBell;
    // SAFETY: never claims a stop (always false): the queue then frees nothing.
    unsafe impl Doorbell for FailingBell {
        fn notify(&mut self) {}
        fn stop_device(&mut self) -> bool {
            false
        }
    }
    let pool = virtual_pool("vio-stop-fails", 16 + 8, 0).unwrap();
    let rxq = VirtioRxQueue::new(Split::ring(16), FailingBell, &pool, 0, 0, false).unwrap();
    drop(rxq);
    flush_thread_caches();
    assert_eq!(
        pool.available(),
        pool.capacity() - 16,
        "the 16 posted buffers stay out of the pool: the device may still write them"
    );
}
