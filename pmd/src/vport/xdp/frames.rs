//! The packets a queue has handed to the kernel, by UMEM chunk. The kernel gives back only
//! addresses (fill → RX, TX → completion); an address is untrusted (design invariant 6): it is
//! bounded against the UMEM and must name a chunk this queue handed out, whose packet is then
//! taken back. A wrong address finds no packet and is counted, never turned into one.
#![forbid(unsafe_code)]

use oxpmd_dma::{Mempool, Packet};

/// Packets out with the kernel, indexed by `addr / chunk`.
#[derive(Debug)]
pub(crate) struct FrameTable {
    slots: Vec<Option<Packet>>,
    /// log2 of the chunk size.
    shift: u32,
    /// IOVA of the UMEM's first byte (a packet's `buf_iova` minus this is its UMEM address).
    base_iova: u64,
    /// Packets out.
    out: usize,
}

/// Where a packet of the UMEM pool lies in the UMEM.
pub(crate) fn umem_addr(pool_base_iova: u64, p: &Packet) -> u64 {
    p.buf_iova().wrapping_sub(pool_base_iova)
}

/// IOVA of a pool region's first byte.
pub(crate) fn base_iova(pool: &Mempool) -> u64 {
    let r = pool.region();
    r.iova().unwrap_or(r.as_ptr() as u64)
}

impl FrameTable {
    /// A table for the chunks of `pool`'s region (a chunk-aligned pool).
    pub(crate) fn new(pool: &Mempool) -> FrameTable {
        let chunk = pool.element_size();
        debug_assert!(chunk.is_power_of_two() && pool.chunk_aligned());
        let n = pool.region().len() / chunk;
        FrameTable {
            slots: (0..n).map(|_| None).collect(),
            shift: chunk.trailing_zeros(),
            base_iova: base_iova(pool),
            out: 0,
        }
    }

    /// Chunk size.
    pub(crate) fn chunk(&self) -> usize {
        1 << self.shift
    }

    /// Packets out with the kernel.
    pub(crate) fn out(&self) -> usize {
        self.out
    }

    /// Records `p` (a packet of the UMEM pool) as the kernel's; returns its chunk's address.
    #[inline]
    pub(crate) fn give(&mut self, p: Packet) -> u64 {
        let addr = umem_addr(self.base_iova, &p);
        let i = (addr >> self.shift) as usize;
        debug_assert!(self.slots[i].is_none(), "a chunk handed out twice");
        self.slots[i] = Some(p);
        self.out += 1;
        addr
    }

    /// The packet of the chunk holding `addr`, with `addr`'s offset in the chunk, if this queue
    /// handed that chunk out.
    #[inline]
    pub(crate) fn take(&mut self, addr: u64) -> Option<(Packet, usize)> {
        let i = usize::try_from(addr >> self.shift).ok()?;
        let p = self.slots.get_mut(i)?.take()?;
        self.out -= 1;
        Some((p, (addr & ((1 << self.shift) - 1)) as usize))
    }

    /// Every packet still out (for parking until the socket is closed).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Packet> + '_ {
        self.out = 0;
        self.slots.iter_mut().filter_map(Option::take)
    }
}

/// Turns a received chunk into the packet of `len` bytes at offset `off`, or `None` (the
/// packet dropped back to its pool) when that is not inside the buffer.
#[inline]
pub(crate) fn received(mut p: Packet, off: usize, len: usize) -> Option<Packet> {
    if len == 0 || off.checked_add(len).is_none_or(|end| end > p.buffer_len()) {
        return None;
    }
    // A reset packet starts at the pool's headroom: move its start to `off`.
    let hr = p.headroom();
    if off >= hr {
        p.set_len(off - hr + len).ok()?;
        p.adjust(off - hr)?;
    } else {
        p.prepend(hr - off)?;
        p.set_len(len).ok()?;
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxpmd_dma::{IdentityMap, MempoolConfig, PageSize, RegionOptions};

    fn pool() -> Mempool {
        let cfg = MempoolConfig {
            headroom: 128,
            data_room: 1920,
            cache_size: 0,
            chunk_aligned: true,
            region: RegionOptions {
                page_size: PageSize::Base4K,
                allow_4k_fallback: true,
            },
            ..MempoolConfig::new("frames", 64)
        };
        Mempool::new(&cfg, std::sync::Arc::new(IdentityMap)).unwrap()
    }

    #[test]
    fn only_a_chunk_handed_out_comes_back_once() {
        let pool = pool();
        let mut t = FrameTable::new(&pool);
        assert_eq!(t.chunk(), 2048);
        let a = t.give(pool.alloc().unwrap());
        let b = t.give(pool.alloc().unwrap());
        assert_eq!(t.out(), 2);
        assert!(t.take(a + 4096 * 1000).is_none(), "outside the UMEM");
        assert!(t.take(u64::MAX).is_none());
        let free_chunk = (0..64u64).map(|i| i * 2048).find(|&x| x != a && x != b).unwrap();
        assert!(t.take(free_chunk).is_none(), "a chunk never handed out");
        let (p, off) = t.take(b + 256).unwrap();
        assert_eq!(off, 256);
        assert!(t.take(b + 256).is_none(), "the same chunk twice");
        let p = received(p, off, 60).unwrap();
        assert_eq!((p.headroom(), p.len()), (256, 60));
        drop(t.drain().collect::<Vec<_>>());
        assert_eq!(t.out(), 0);
        assert_eq!(pool.available() + 1, pool.capacity());
    }

    #[test]
    fn a_length_past_the_buffer_is_refused() {
        let pool = pool();
        assert!(received(pool.alloc().unwrap(), 256, 2048 - 256 + 1).is_none());
        assert!(received(pool.alloc().unwrap(), 256, 0).is_none());
        let p = received(pool.alloc().unwrap(), 0, 2048).unwrap();
        assert_eq!((p.headroom(), p.len()), (0, 2048));
        drop(p);
        assert_eq!(pool.available(), pool.capacity());
    }
}
