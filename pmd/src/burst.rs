//! [`Burst`]: the fixed-capacity, reusable buffer of packets that RX fills and TX drains.
#![forbid(unsafe_code)]

use oxpmd_dma::Packet;

/// Default burst capacity (DPDK's l2fwd and testpmd use 32).
pub const DEFAULT_BURST: usize = 32;
/// Largest capacity a burst may have.
pub const MAX_BURST: usize = 512;

/// The requested capacity is outside `1..=MAX_BURST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("burst capacity {0} out of range: expected 1..={MAX_BURST}")]
pub struct BurstCapacityError(pub usize);

/// A fixed-capacity buffer of owned packets, allocated once and reused for every burst.
///
/// `rx_burst` appends up to [`Burst::room`] packets; `tx_burst` takes packets from the front and
/// leaves what it did not take in the burst, in order. Dropping a burst (or [`Burst::clear`]) frees
/// its packets. No operation allocates after construction.
pub struct Burst {
    pkts: Vec<Packet>,
    cap: usize,
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Burst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Burst")
            .field("len", &self.pkts.len())
            .field("cap", &self.cap)
            .finish()
    }
}

impl Burst {
    /// An empty burst of [`DEFAULT_BURST`] packets.
    pub fn new() -> Self {
        Burst {
            pkts: Vec::with_capacity(DEFAULT_BURST),
            cap: DEFAULT_BURST,
        }
    }

    /// An empty burst of `cap` packets, `1 <= cap <= MAX_BURST`.
    pub fn with_capacity(cap: usize) -> Result<Self, BurstCapacityError> {
        if cap == 0 || cap > MAX_BURST {
            return Err(BurstCapacityError(cap));
        }
        Ok(Burst {
            pkts: Vec::with_capacity(cap),
            cap,
        })
    }

    /// Capacity fixed at construction.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Packets held.
    #[inline]
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// True when no packet is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// True when `len() == capacity()`.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.pkts.len() >= self.cap
    }

    /// Free places: how many packets `push` / `rx_burst` can still add.
    #[inline]
    pub fn room(&self) -> usize {
        self.cap - self.pkts.len()
    }

    /// Appends a packet, or hands it back when the burst is full.
    #[inline]
    pub fn push(&mut self, pkt: Packet) -> Result<(), Packet> {
        if self.is_full() {
            return Err(pkt);
        }
        self.pkts.push(pkt);
        Ok(())
    }

    /// Removes the last packet.
    #[inline]
    pub fn pop(&mut self) -> Option<Packet> {
        self.pkts.pop()
    }

    /// Frees every packet held.
    #[inline]
    pub fn clear(&mut self) {
        // A run of packets of one pool goes back in one operation of this thread's cache.
        oxpmd_dma::drop_packets(&mut self.pkts);
    }

    /// The packets, oldest first.
    #[inline]
    pub fn as_slice(&self) -> &[Packet] {
        &self.pkts
    }

    /// The packets, mutable (to rewrite headers in place).
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Packet] {
        &mut self.pkts
    }

    /// Iterates over the packets.
    #[inline]
    pub fn iter(&self) -> std::slice::Iter<'_, Packet> {
        self.pkts.iter()
    }

    /// Iterates mutably over the packets.
    #[inline]
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Packet> {
        self.pkts.iter_mut()
    }

    /// Removes and yields every packet, oldest first.
    #[inline]
    pub fn drain(&mut self) -> std::vec::Drain<'_, Packet> {
        self.pkts.drain(..)
    }

    /// Removes and yields the first `n` packets (all if fewer); the rest move to the front in order.
    #[inline]
    pub fn drain_front(&mut self, n: usize) -> std::vec::Drain<'_, Packet> {
        let n = n.min(self.pkts.len());
        self.pkts.drain(..n)
    }

    /// Keeps only the packets for which `keep` returns true (the others are freed), in order.
    pub fn retain(&mut self, keep: impl FnMut(&Packet) -> bool) {
        self.pkts.retain(keep);
    }

    /// The backing vector, for queue implementations that move packets in and out in bulk.
    /// Its capacity may exceed [`Burst::capacity`]: callers must respect [`Burst::room`].
    #[inline]
    pub(crate) fn vec_mut(&mut self) -> &mut Vec<Packet> {
        &mut self.pkts
    }
}

impl<'a> IntoIterator for &'a Burst {
    type Item = &'a Packet;
    type IntoIter = std::slice::Iter<'a, Packet>;
    fn into_iter(self) -> Self::IntoIter {
        self.pkts.iter()
    }
}

impl<'a> IntoIterator for &'a mut Burst {
    type Item = &'a mut Packet;
    type IntoIter = std::slice::IterMut<'a, Packet>;
    fn into_iter(self) -> Self::IntoIter {
        self.pkts.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vport::virtual_pool;

    #[test]
    fn capacity_is_bounded() {
        assert_eq!(Burst::new().capacity(), DEFAULT_BURST);
        assert!(Burst::with_capacity(0).is_err());
        assert!(Burst::with_capacity(MAX_BURST + 1).is_err());
        assert_eq!(Burst::with_capacity(MAX_BURST).unwrap().capacity(), MAX_BURST);
    }

    #[test]
    fn push_refuses_beyond_capacity_and_drain_front_keeps_order() {
        let pool = virtual_pool("burst-test", 64, 8).unwrap();
        let mut b = Burst::with_capacity(4).unwrap();
        for i in 0..4u64 {
            let mut p = pool.alloc().unwrap();
            p.set_user(i);
            b.push(p).unwrap();
        }
        assert!(b.is_full());
        assert_eq!(b.room(), 0);
        let extra = pool.alloc().unwrap();
        let back = b.push(extra).unwrap_err();
        assert_eq!(back.user(), 0);
        drop(back);
        let first: Vec<u64> = b.drain_front(3).map(|p| p.user()).collect();
        assert_eq!(first, [0, 1, 2]);
        assert_eq!(b.iter().map(|p| p.user()).collect::<Vec<_>>(), [3]);
        assert_eq!(b.room(), 3);
        b.clear();
        assert!(b.is_empty());
        oxpmd_dma::flush_thread_caches();
        assert_eq!(pool.available(), pool.capacity(), "dropping packets returns them");
    }
}
