//! The 16-byte advanced descriptor ring, shared by igb, igbvf and (later) ixgbe.
//!
//! A driver gives a ring three things: descriptor memory ([`RingMemory`], device-visible), the
//! queue's tail register and disable switch ([`QueueRegs`], a BAR register in a real driver, a fake
//! device in tests), and for RX a mempool. The ring does the rest of the datapath:
//!
//! - [`AdvRxRing::rx_burst`]: reads DD (volatile) then `fence(Acquire)` before the rest of the
//!   write-back, hands the filled buffer out, posts a fresh one in its slot (re-writing `pkt_addr`,
//!   since the device overwrote the read format), and writes the tail once per burst after a
//!   release fence. Frames spanning several descriptors (no EOP) are **dropped and counted**
//!   (`rx_dropped_multiseg`), as are frames with RXE; an empty pool drops the frame, keeps the old
//!   buffer in the slot and counts `rx_nombuf`.
//! - [`AdvTxRing::tx_burst`]: writes one data descriptor per packet (plus a context descriptor when
//!   checksum offload needs new header lengths), RS on every [`TX_RS_THRESH`]-th descriptor, one
//!   tail write per burst after a release fence; cleanup checks DD on the RS descriptor of the
//!   oldest batch and frees its packets in bulk.
//!
//! Invariant 1: a posted buffer is held in a slot as an owned [`Packet`] that the ring never reads
//! or writes until the device has set DD on its descriptor. Invariant 3: dropping a ring first calls
//! [`QueueRegs::disable`], then frees its buffers; the descriptor memory is dropped last.
//! Invariant 4: every packet a ring holds goes back to its pool when the ring is dropped.
//!
//! [`Packet`]: oxpmd_dma::Packet

pub mod desc;
mod rx;
mod tx;

/// Test support: not part of the API (the crate's own tests, and others' with `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod fake;

pub use rx::{AdvRxRing, MIN_RX_BUFFER, RxRingError};
pub use tx::{AdvTxRing, MAX_TX_LEN, MAX_TX_SEGS, TX_RS_THRESH, TxRingError};

use std::alloc::Layout;
use std::ptr::NonNull;

/// Smallest ring accepted (descriptors).
pub const MIN_RING_SIZE: usize = 64;
/// Largest ring accepted (descriptors; the 82576 allows up to 4096).
pub const MAX_RING_SIZE: usize = 4096;

/// The per-queue registers a ring drives.
///
/// A real driver implements it over its BAR0 mapping (RDT/TDT and RXDCTL/TXDCTL of the queue);
/// tests implement it with a fake device that plays the NIC over the same descriptor memory.
///
/// # Safety
/// The ring frees its buffers and its descriptor memory as soon as [`try_disable`] (or, after it
/// failed, [`stop_device_dma`]) returns `true`, so an implementation returns `true` only once the
/// device can no longer read or write the ring's descriptors and buffers; a device still writing
/// would write into memory that has been reused. [`disable`] (what the default `try_disable`
/// calls) must likewise return only once the device has stopped.
///
/// [`try_disable`]: QueueRegs::try_disable
/// [`stop_device_dma`]: QueueRegs::stop_device_dma
/// [`disable`]: QueueRegs::disable
pub unsafe trait QueueRegs: Send {
    /// Writes the queue's tail register (RDT / TDT) with a volatile 32-bit store. The ring has
    /// already issued a release fence, so every descriptor write before it is visible first.
    fn write_tail(&mut self, tail: u32);

    /// Disables the queue and returns once the device no longer reads or writes its descriptors or
    /// buffers (e.g. RXDCTL.ENABLE reads back 0). For implementations whose disable cannot fail;
    /// the ring calls [`try_disable`](Self::try_disable), which by default calls this.
    fn disable(&mut self);

    /// Disables the queue like [`disable`](Self::disable) and reports whether the device is known
    /// to have stopped accessing the ring (`false`: a timeout or a register access error). Called
    /// once, by the ring's `Drop`, before any buffer or descriptor memory is released (invariant
    /// 3). Implementations whose disable can fail must override it; the default calls `disable`
    /// and returns `true`.
    fn try_disable(&mut self) -> bool {
        self.disable();
        true
    }

    /// Last resort after [`try_disable`](Self::try_disable) failed: stops all DMA of the device
    /// (e.g. PCI bus mastering off). Returns `true` once the device can no longer access memory.
    /// If it returns `false` too, the ring leaks its posted buffers and its memory rather than
    /// hand them back while the device may still write into them. Default: `false`.
    fn stop_device_dma(&mut self) -> bool {
        false
    }
}

/// The teardown step of a ring: `true` when the device is known to be off (the queue disabled,
/// or failing that the device's DMA stopped). Logs what it had to do.
pub(crate) fn quiesce<R: QueueRegs>(regs: &mut R, what: std::fmt::Arguments<'_>) -> bool {
    if regs.try_disable() {
        return true;
    }
    if regs.stop_device_dma() {
        log::error!("{what}: the queue did not disable; stopped the device's DMA (bus mastering off)");
        return true;
    }
    false
}

/// Memory that holds a descriptor ring: device-visible, hence accessed only through raw pointers.
///
/// # Safety
/// Implementors guarantee that `as_ptr()` is valid for reads and writes of `len()` bytes, aligned
/// to [`desc::RING_ALIGN`], that the device sees the same bytes at `iova()`, and that both stay
/// valid until the value is dropped.
pub unsafe trait RingMemory: Send {
    /// CPU address of the first byte.
    fn as_ptr(&self) -> *mut u8;
    /// Device (IO virtual) address of the first byte.
    fn iova(&self) -> u64;
    /// Length in bytes.
    fn len(&self) -> usize;
    /// True when the memory is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Zeroed, 128-byte aligned heap memory whose IOVA is its virtual address: for tests, benches and
/// devices without an IOMMU mapping (fake devices). A real device needs DMA-mapped memory instead.
pub struct HeapRingMemory {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the allocation is owned exclusively by this value; moving it between threads is fine.
unsafe impl Send for HeapRingMemory {}

impl HeapRingMemory {
    /// Allocates room for `descs` descriptors, zeroed.
    pub fn new(descs: usize) -> Self {
        let len = (descs * desc::DESC_SIZE).max(desc::RING_ALIGN);
        let layout = Layout::from_size_align(len, desc::RING_ALIGN).expect("ring layout: size fits isize");
        // SAFETY: layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        HeapRingMemory { ptr, layout }
    }
}

// SAFETY: the allocation is `layout.size()` bytes, 128-aligned, owned until drop; IOVA == VA for
// the in-process fake devices this type is meant for.
unsafe impl RingMemory for HeapRingMemory {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn iova(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }
    fn len(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for HeapRingMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Checks a ring size: a power of two in `MIN_RING_SIZE..=MAX_RING_SIZE`.
pub fn check_ring_size(n: usize) -> Result<(), String> {
    if !n.is_power_of_two() || !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&n) {
        return Err(format!(
            "ring size {n} invalid: expected a power of two in {MIN_RING_SIZE}..={MAX_RING_SIZE}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod device_fault_tests;
#[cfg(test)]
mod reset_tests;
#[cfg(test)]
mod tests;
