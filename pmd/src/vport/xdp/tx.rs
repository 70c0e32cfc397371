//! A TX queue of an `xdp:` port: a packet of the UMEM pool is sent from its own buffer; a
//! packet of another pool is copied into a UMEM buffer first (it is not in memory the kernel
//! can reach). The completion ring gives sent buffers back to the pool.
#![forbid(unsafe_code)]

use std::sync::Arc;

use oxpmd_dma::{Mempool, Packet};

use super::frames::FrameTable;
use super::ring::XskRing;
use super::socket::XskSocket;
use super::sys::XdpDesc;
use crate::burst::Burst;
use crate::driver::TxQueueOps;
use crate::stats::QueueCounters;

/// TX half of one socket.
pub(crate) struct XdpTxQueue {
    pub(crate) frames: FrameTable,
    pub(crate) tx: XskRing<XdpDesc>,
    pub(crate) comp: XskRing<u64>,
    pub(crate) sock: Arc<XskSocket>,
    pub(crate) pool: Mempool,
    pub(crate) base_iova: u64,
    /// UMEM buffers for the copies of this burst's foreign packets.
    pub(crate) copies: Vec<Packet>,
    /// Oversized packets refused (logged once).
    pub(crate) refused_logged: bool,
    pub(crate) device: String,
}

impl XdpTxQueue {
    /// Frees what the kernel has sent.
    fn complete(&mut self) -> usize {
        let n = self.comp.ready(self.comp.size());
        for i in 0..n {
            // An address this queue did not hand out finds nothing and frees nothing.
            drop(self.frames.take(self.comp.read(i)));
        }
        if n > 0 {
            self.comp.release(n);
        }
        n as usize
    }

    fn fits(&self, p: &Packet) -> bool {
        !p.is_empty() && p.len() <= self.frames.chunk()
    }
}

/// Whether `p` goes out from its own buffer: a single segment of the UMEM's pool (a chain, or a
/// packet of another pool, is copied into one UMEM frame).
#[inline(always)]
fn sent_as_is(pool: &oxpmd_dma::Mempool, p: &Packet) -> bool {
    p.is_contiguous() && pool.owns(p)
}

impl TxQueueOps for XdpTxQueue {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize {
        self.complete();
        let free = self.tx.free(pkts.len() as u32) as usize;
        // Buffers for the copies first, so that a packet is only taken once it can go.
        let mut k = 0;
        self.copies.clear();
        for p in &pkts.as_slice()[..free] {
            if !sent_as_is(&self.pool, p) && self.fits(p) {
                match self.pool.alloc() {
                    Some(b) => self.copies.push(b),
                    None => break,
                }
            }
            k += 1;
        }
        let mut copies = std::mem::take(&mut self.copies);
        let mut copy = copies.drain(..);
        let mut written = 0u32;
        let mut bytes = 0u64;
        for p in pkts.drain_front(k) {
            if !self.fits(&p) {
                if !self.refused_logged {
                    self.refused_logged = true;
                    log::error!(
                        "{}: TX: a packet of {} bytes does not fit in a UMEM frame of {} bytes (or is \
                         empty): dropped and counted in the queue's errors",
                        self.device,
                        p.len(),
                        self.frames.chunk()
                    );
                }
                c.ierrors += 1;
                continue;
            }
            let p = if sent_as_is(&self.pool, &p) {
                p
            } else {
                let Some(mut b) = copy.next() else {
                    // Not reached: a buffer was taken above for each packet that needs one.
                    c.ierrors += 1;
                    continue;
                };
                // A fresh buffer's reset headroom leaves at least chunk - headroom bytes; from
                // offset 0 the whole chunk.
                let _ = b.prepend(b.headroom());
                if b.set_len(p.len()).is_err() {
                    c.ierrors += 1;
                    continue;
                }
                // The whole packet, every segment of a chain: a TX descriptor names one frame.
                if p.copy_out(0, b.data_mut()).is_err() {
                    c.ierrors += 1;
                    continue;
                }
                b
            };
            let len = p.len() as u32;
            let addr = p.data_iova().wrapping_sub(self.base_iova);
            self.frames.give(p);
            self.tx.write(
                written,
                XdpDesc {
                    addr,
                    len,
                    options: 0,
                },
            );
            written += 1;
            bytes += u64::from(len);
        }
        drop(copy);
        self.copies = copies;
        if written > 0 {
            self.tx.submit(written);
        }
        if self.tx.needs_wakeup() {
            self.sock.wake(true);
        }
        c.packets += u64::from(written);
        c.bytes += bytes;
        k
    }

    fn reclaim(&mut self, _c: &mut QueueCounters) -> usize {
        if self.tx.needs_wakeup() && self.frames.out() > 0 {
            self.sock.wake(true);
        }
        self.complete()
    }
}

impl Drop for XdpTxQueue {
    fn drop(&mut self) {
        self.complete();
        self.sock.park(self.frames.drain());
    }
}
