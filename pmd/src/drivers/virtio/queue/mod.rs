//! virtio-net RX and TX queues on a [`Virtqueue`](super::split::Virtqueue) (split or packed).
//!
//! - RX: every buffer is one device-writable descriptor starting [`nethdr::LEN`](super::regs::nethdr::LEN) bytes before the
//!   buffer's data offset, so the device writes the 12-byte net header into the headroom and the
//!   frame at the data offset: no copy. A frame the device merged over several buffers
//!   (VIRTIO_NET_F_MRG_RXBUF, `num_buffers > 1` in the first one's header) becomes a chained
//!   packet: the first segment starts after the header, the others at the start of their buffer
//!   (only the first holds a header). `num_buffers` is the device's word: it is bounded by the
//!   largest frame the queue accepts, and a frame beyond it is dropped and counted
//!   (`rx_multiseg_dropped`).
//! - TX: the net header is prepended into the packet's headroom (one descriptor per packet); a
//!   packet without 12 bytes of headroom gets a two-descriptor chain whose header lives in a
//!   per-slot table in the ring memory. Checksum offload: `TX_TCP_CKSUM` / `TX_UDP_CKSUM` become
//!   `NEEDS_CSUM` with `csum_start` / `csum_offset` (the application has put the pseudo-header
//!   sum in the checksum field, as for the Intel NICs); `TX_IP_CKSUM` is computed here in
//!   software (virtio has no IPv4 header checksum offload). TSO (`TX_TCP_SEG` with a segment
//!   size): when the device negotiated VIRTIO_NET_F_HOST_TSO4 / 6 (with NET_CSUM), the header
//!   carries `gso_type` TCPV4 / TCPV6, `hdr_len` and `gso_size` and the device cuts the packet
//!   (up to [`MAX_TSO_LEN`]); any other TSO packet is refused and counted.
//! - The doorbell is rung once per burst, and only when the device asks for it (used ring flag).
//! - Teardown (invariant 3): a queue's `Drop` first calls [`Doorbell::stop_device`] (virtio 1.0
//!   has no per-queue stop: the device is reset, which stops all its DMA), then frees its buffers.
//!   If the device could not be stopped, the buffers and the ring memory are leaked instead: the
//!   device may still write them.
//! - Device anomalies (used ids not in flight, lengths beyond the buffer) are counted, never
//!   followed: whatever the [`Virtqueue`](super::split::Virtqueue) reports, a buffer is taken back only from a slot this
//!   queue filled when it posted it (the posted-id check), so a wrong id can never become a
//!   packet; a ring that cannot go on (a packed ring after a bad id) is reported once and the
//!   queue then does nothing until it is dropped (reopen the port).
#![allow(unsafe_code)]

mod rx;
mod tx;

use oxpmd_dma::{Packet, RawBuffer};

pub use rx::VirtioRxQueue;
pub use tx::{MAX_TSO_LEN, MAX_TX_LEN, MAX_TX_SEGS, TxAddressCheck, VirtioTxQueue, tx_header_table_bytes};

/// What a queue needs from the device besides its ring memory.
///
/// # Safety
/// [`stop_device`](Doorbell::stop_device) returns `true` only when the device can no longer
/// read or write the queue's ring and buffers: the queue then frees both, and a device still
/// writing would corrupt memory that has been reused.
pub unsafe trait Doorbell: Send {
    /// Notifies the device that the queue has new available buffers (a 16-bit write of the queue
    /// index to its notify address).
    fn notify(&mut self);
    /// Stops the device's DMA to this queue's ring and buffers and returns once it is stopped,
    /// even when another thread (another queue, the driver) is stopping it at the same time.
    /// Called once by the queue's `Drop`, before any buffer is freed. Returns whether the device
    /// is known to be stopped; when not, the queue leaks its buffers and ring memory.
    fn stop_device(&mut self) -> bool;
}

/// Why a queue could not be built.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Ring layout refused.
    #[error(transparent)]
    Ring(#[from] super::split::SplitRingError),
    /// The pool could not fill the ring.
    #[error("mempool could not supply {needed} buffers to fill the RX ring; make the pool larger")]
    Pool {
        /// Buffers needed.
        needed: usize,
    },
    /// The pool's buffers leave no room for the net header.
    #[error(
        "mempool buffers have {headroom} bytes of headroom; the virtio-net header needs {need} \
         (use the default headroom of 128)"
    )]
    Headroom {
        /// Headroom of the pool.
        headroom: usize,
        /// Needed.
        need: usize,
    },
}

/// Invariant 3 at a queue's drop: the device is stopped before any buffer goes back. When it
/// could not be stopped this says so, with `leaked` (what the caller then leaks), and is false.
fn stopped_for_teardown(doorbell: &mut impl Doorbell, leaked: impl FnOnce() -> String) -> bool {
    let stopped = doorbell.stop_device();
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    if !stopped {
        log::error!(
            "{}: the device could not be stopped; leaked, since the device may still access them",
            leaked()
        );
    }
    stopped
}

/// Frees the buffers of `bufs` (a queue's posted buffers, NULL where none), leaving NULL.
///
/// # Safety
/// Every non-NULL entry is a buffer the queue owns, and the device no longer accesses any of
/// them (it was stopped: [`stopped_for_teardown`]).
unsafe fn free_posted(bufs: &mut [RawBuffer]) {
    for b in bufs.iter_mut() {
        let b = std::mem::replace(b, RawBuffer::NULL);
        if !b.is_null() {
            // SAFETY: owned by the queue, out of the device's reach (caller contract).
            drop(unsafe { Packet::from_raw(b) });
        }
    }
}
