//! An RX queue of an `xdp:` port: keeps the fill ring stocked with buffers of the UMEM pool and
//! turns RX descriptors back into the packets of those buffers, without a copy.
#![forbid(unsafe_code)]

use std::sync::Arc;

use oxpmd_dma::{Mempool, Packet};

use super::frames::{FrameTable, received};
use super::ring::XskRing;
use super::socket::XskSocket;
use super::sys::XdpDesc;
use crate::burst::{Burst, DEFAULT_BURST, MAX_BURST};
use crate::driver::RxQueueOps;
use crate::stats::QueueCounters;

/// RX half of one socket.
pub(crate) struct XdpRxQueue {
    pub(crate) frames: FrameTable,
    pub(crate) fill: XskRing<u64>,
    pub(crate) rx: XskRing<XdpDesc>,
    pub(crate) sock: Arc<XskSocket>,
    pub(crate) pool: Mempool,
    pub(crate) fresh: Vec<Option<Packet>>,
    pub(crate) port_id: u16,
    pub(crate) queue: u16,
}

impl XdpRxQueue {
    /// Posts half the fill ring before the first frame: the kernel takes all it sees at once,
    /// and the other half must be free for us to post into while it uses them.
    pub(crate) fn prime(&mut self) {
        self.post(self.fill.size() / 2);
        if self.fill.needs_wakeup() {
            self.sock.wake(false);
        }
    }

    /// Posts up to `limit` buffers in bursts of [`MAX_BURST`] while the pool has buffers, never
    /// more than the RX ring's size (half the fill ring) out with the kernel at once: that is
    /// what the port's pool-size check counts on per RX queue, and the fill ring's other half is
    /// only room to post into before the kernel says how far it has read.
    /// Posting waits for at least [`DEFAULT_BURST`] free places (or the whole ring, if smaller),
    /// so that a syscall-free refill is never a handful of buffers.
    fn post(&mut self, limit: u32) {
        let ring = self.fill.size() / 2;
        let out = u32::try_from(self.frames.out()).unwrap_or(u32::MAX);
        let mut limit = limit.min(ring.saturating_sub(out));
        let batch = (DEFAULT_BURST as u32).min(ring);
        while limit >= batch {
            let n = self.fill.free((MAX_BURST as u32).min(limit));
            if n < batch {
                break;
            }
            let fresh = &mut self.fresh[..n as usize];
            if self.pool.alloc_bulk(fresh).is_err() {
                break;
            }
            for (i, p) in fresh.iter_mut().enumerate() {
                if let Some(p) = p.take() {
                    let addr = self.frames.give(p);
                    self.fill.write(i as u32, addr);
                }
            }
            self.fill.submit(n);
            limit -= n;
        }
    }

    /// Tops the fill ring up while the pool has buffers.
    pub(crate) fn refill(&mut self) {
        self.post(u32::MAX);
        if self.fill.needs_wakeup() {
            self.sock.wake(false);
        }
    }
}

impl RxQueueOps for XdpRxQueue {
    #[inline]
    fn rx_burst(&mut self, out: &mut Burst, c: &mut QueueCounters) -> usize {
        let n = self.rx.ready(out.room() as u32);
        let mut got = 0;
        for i in 0..n {
            let d = self.rx.read(i);
            let Some((p, off)) = self.frames.take(d.addr) else {
                // Not a chunk this queue handed out: nothing to give back.
                c.ierrors += 1;
                continue;
            };
            let Some(mut p) = received(p, off, d.len as usize) else {
                c.ierrors += 1;
                continue;
            };
            p.set_port(self.port_id);
            p.set_queue(self.queue);
            c.bytes += p.len() as u64;
            let _ = out.push(p);
            got += 1;
        }
        if n > 0 {
            self.rx.release(n);
        }
        c.packets += got as u64;
        self.refill();
        got
    }
}

impl Drop for XdpRxQueue {
    fn drop(&mut self) {
        // The fill ring's buffers (and the RX ring's) may still be written by the kernel until
        // the socket is closed: the socket frees them then.
        self.sock.park(self.frames.drain());
    }
}
