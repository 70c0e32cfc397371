//! Chained packets: linking, splitting, iterating and copying across segments, and freeing a
//! chain whole.
//!
//! A chain is owned through its head: every segment after it is reachable only through `next`
//! pointers in CPU-only metadata, each set by an operation here on buffers the caller owned (so a
//! chain has no cycle and no buffer twice), and every operation that takes segments apart gives
//! each of them back to exactly one owner.

use core::marker::PhantomData;
use core::ptr::NonNull;

use super::meta::BufMeta;
use super::{MAX_PKT_LEN, MAX_SEGS, Packet, PacketError};

impl Packet {
    /// The last segment (the head itself when not chained).
    #[inline]
    pub(super) fn last_segment(&self) -> NonNull<BufMeta> {
        let mut cur = self.meta;
        // SAFETY: every `next` of a chain owned by this packet points to a live segment's
        // metadata (CPU-only), and the last one is null.
        while let Some(n) = NonNull::new(unsafe { cur.as_ref() }.next) {
            cur = n;
        }
        cur
    }

    /// Bytes free after the last segment's data.
    pub(super) fn last_tailroom(&self) -> usize {
        // SAFETY: a segment of this packet (see last_segment); shared access via &self.
        let l = unsafe { self.last_segment().as_ref() };
        usize::from(l.buf_len - l.data_off - l.data_len)
    }

    /// Detaches the segments after the head: the head keeps its own data only, the rest (if
    /// any) becomes a packet of its own.
    pub(super) fn take_tail(&mut self) -> Option<Packet> {
        let h = self.meta_mut();
        let next = NonNull::new(h.next)?;
        let (nb_segs, rest_len) = (h.nb_segs - 1, h.pkt_len - u32::from(h.data_len));
        h.next = core::ptr::null_mut();
        h.nb_segs = 1;
        h.pkt_len = u32::from(h.data_len);
        // SAFETY: `next` is the second segment of this packet's chain, owned by it and now by
        // nobody else: it heads the rest, whose count and length are set here.
        let mut rest = unsafe { Packet::from_meta(next) };
        let r = rest.meta_mut();
        r.nb_segs = nb_segs;
        r.pkt_len = rest_len;
        Some(rest)
    }

    /// Splits off the head segment: returns it as a single-segment packet (it keeps the head's
    /// metadata: port, flags, hash, VLAN) and the rest of the chain, if any, as a packet of its
    /// own. TX drivers post one descriptor per segment this way and free each segment on its own
    /// completion.
    #[inline]
    pub fn split_first_segment(mut self) -> (Packet, Option<Packet>) {
        if self.meta().nb_segs == 1 {
            return (self, None);
        }
        let rest = self.take_tail();
        (self, rest)
    }

    /// Links `tail` (a packet, itself possibly a chain) after the last segment of this one, as
    /// `rte_pktmbuf_chain` does; the segments may come from different pools. Refused (and `tail`
    /// dropped) if the chain would pass [`MAX_SEGS`] segments or [`MAX_PKT_LEN`] bytes.
    pub fn chain(&mut self, tail: Packet) -> Result<(), PacketError> {
        let (nb_segs, len) = chain_limits(self.nb_segs() + tail.nb_segs(), self.len() + tail.len())?;
        let last = self.last_segment();
        let t = tail.into_raw();
        // SAFETY: `last` is this packet's last segment, owned by it (exclusive via &mut self);
        // `t` heads a chain this packet now owns (taken from the consumed `tail`), disjoint from
        // ours since two owners never share a buffer.
        unsafe { (*last.as_ptr()).next = t.0 };
        let h = self.meta_mut();
        h.nb_segs = nb_segs as u16;
        h.pkt_len = len as u32;
        Ok(())
    }

    /// The data of every segment, in order.
    #[inline]
    pub fn segments(&self) -> Segments<'_> {
        Segments {
            cur: self.meta.as_ptr(),
            _packet: PhantomData,
        }
    }

    /// The data of every segment, in order, mutable.
    #[inline]
    pub fn segments_mut(&mut self) -> SegmentsMut<'_> {
        SegmentsMut {
            cur: self.meta.as_ptr(),
            _packet: PhantomData,
        }
    }

    /// The device address and length of every segment's data, in order (what TX descriptors
    /// carry).
    #[inline]
    pub fn dma_segments(&self) -> DmaSegments<'_> {
        DmaSegments {
            cur: self.meta.as_ptr(),
            _packet: PhantomData,
        }
    }

    /// Copies `dst.len()` bytes starting at `offset` of the packet into `dst`, across segments.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> Result<(), PacketError> {
        self.check_range(offset, dst.len())?;
        let mut range = RangeCursor::new(offset, dst.len());
        for seg in self.segments() {
            let Some((part, at)) = range.piece(seg.len()) else {
                break;
            };
            dst[at..at + part.len()].copy_from_slice(&seg[part]);
        }
        Ok(())
    }

    /// Copies `src` into the packet starting at `offset`, across segments (the length does not
    /// change: the range must lie inside the packet).
    pub fn copy_in(&mut self, offset: usize, src: &[u8]) -> Result<(), PacketError> {
        self.check_range(offset, src.len())?;
        let mut range = RangeCursor::new(offset, src.len());
        for seg in self.segments_mut() {
            let Some((part, at)) = range.piece(seg.len()) else {
                break;
            };
            let n = part.len();
            seg[part].copy_from_slice(&src[at..at + n]);
        }
        Ok(())
    }

    fn check_range(&self, offset: usize, n: usize) -> Result<(), PacketError> {
        let len = self.len();
        match offset.checked_add(n) {
            Some(end) if end <= len => Ok(()),
            end => Err(PacketError::OutOfRange {
                offset,
                end: end.unwrap_or(usize::MAX),
                len,
            }),
        }
    }

    /// Moves the whole packet into its head segment (like `rte_pktmbuf_linearize`) and frees the
    /// other segments; nothing changes and [`PacketError::TooLong`] is returned if the head's
    /// buffer cannot hold it. A contiguous packet is left as it is.
    pub fn linearize(&mut self) -> Result<(), PacketError> {
        if self.is_contiguous() {
            return Ok(());
        }
        let extra = self.len() - self.seg_len();
        if extra > self.tailroom() {
            return Err(PacketError::TooLong {
                len: self.len(),
                room: self.buffer_len() - self.headroom(),
            });
        }
        let rest = self.take_tail();
        for seg in rest.iter().flat_map(|r| r.segments()) {
            // Room was checked above for the sum of the segments' lengths.
            let dst = self
                .append(seg.len())
                .expect("the head's tailroom holds every segment");
            dst.copy_from_slice(seg);
        }
        drop(rest);
        Ok(())
    }
}

/// `(nb_segs, len)` of a chain, or the error when it would pass a packet's limits.
fn chain_limits(nb_segs: usize, len: usize) -> Result<(usize, usize), PacketError> {
    if nb_segs > MAX_SEGS || len > MAX_PKT_LEN {
        return Err(PacketError::ChainTooLong {
            nb_segs,
            len,
            max_segs: MAX_SEGS,
            max_len: MAX_PKT_LEN,
        });
    }
    Ok((nb_segs, len))
}

/// Walks a byte range of a packet segment by segment: for each segment in order,
/// [`RangeCursor::piece`] gives the part of it the range covers and where that part sits in the
/// range.
pub(crate) struct RangeCursor {
    /// Bytes of the range still before the current segment.
    skip: usize,
    /// Bytes of the range not yet given.
    left: usize,
    /// Bytes of the range given so far.
    done: usize,
}

impl RangeCursor {
    pub(crate) fn new(offset: usize, len: usize) -> Self {
        RangeCursor {
            skip: offset,
            left: len,
            done: 0,
        }
    }

    /// The part of the next segment (of `len` bytes) inside the range, as a range of that
    /// segment and the offset of its first byte within the range; `None` once the range is
    /// done. A segment wholly before the range gives an empty part.
    pub(crate) fn piece(&mut self, len: usize) -> Option<(core::ops::Range<usize>, usize)> {
        if self.left == 0 {
            return None;
        }
        let from = self.skip.min(len);
        self.skip -= from;
        let n = (len - from).min(self.left);
        let at = self.done;
        self.done += n;
        self.left -= n;
        Some((from..from + n, at))
    }
}

/// Frees every segment of the chain headed by `head`, each to its own pool, resetting each to a
/// single-segment buffer first (the chain invariant of a pool's buffers).
#[cold]
pub(crate) fn free_chain(head: NonNull<BufMeta>) {
    let mut cur = Some(head);
    while let Some(m) = cur {
        // SAFETY: a segment of the chain being freed, owned by the dropping packet; its `next`
        // is read before the segment goes back (another thread may take it at once).
        let meta = unsafe { &mut *m.as_ptr() };
        cur = NonNull::new(meta.next);
        meta.next = core::ptr::null_mut();
        meta.nb_segs = 1;
        crate::mempool::return_one(m);
    }
}

/// Iterator over the data of a packet's segments ([`Packet::segments`]).
pub struct Segments<'a> {
    cur: *mut BufMeta,
    _packet: PhantomData<&'a Packet>,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];
    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        // SAFETY: null, or a segment of the borrowed packet's chain (valid while it is borrowed).
        let m = unsafe { self.cur.as_ref() }?;
        self.cur = m.next;
        // SAFETY: the segment's data range lies in its buffer (every length operation keeps
        // data_off + data_len <= buf_len) and the CPU owns the buffer while the packet exists.
        Some(unsafe {
            core::slice::from_raw_parts(m.buf_addr.add(usize::from(m.data_off)), usize::from(m.data_len))
        })
    }
}

/// Iterator over the device addresses and lengths of a packet's segments
/// ([`Packet::dma_segments`]).
pub struct DmaSegments<'a> {
    cur: *mut BufMeta,
    _packet: PhantomData<&'a Packet>,
}

impl Iterator for DmaSegments<'_> {
    type Item = (u64, usize);
    #[inline]
    fn next(&mut self) -> Option<(u64, usize)> {
        // SAFETY: as in Segments::next.
        let m = unsafe { self.cur.as_ref() }?;
        self.cur = m.next;
        Some((m.buf_iova + u64::from(m.data_off), usize::from(m.data_len)))
    }
}

/// Iterator over the mutable data of a packet's segments ([`Packet::segments_mut`]).
pub struct SegmentsMut<'a> {
    cur: *mut BufMeta,
    _packet: PhantomData<&'a mut Packet>,
}

impl<'a> Iterator for SegmentsMut<'a> {
    type Item = &'a mut [u8];
    #[inline]
    fn next(&mut self) -> Option<&'a mut [u8]> {
        // SAFETY: as in Segments::next.
        let m = unsafe { self.cur.as_ref() }?;
        self.cur = m.next;
        // SAFETY: as in Segments::next; the packet is borrowed exclusively and each segment's
        // buffer is a different buffer, yielded once, so the slices never overlap.
        Some(unsafe {
            core::slice::from_raw_parts_mut(m.buf_addr.add(usize::from(m.data_off)), usize::from(m.data_len))
        })
    }
}

/// Builds a chain one segment at a time in O(1) per segment, for RX paths that receive a frame
/// over several descriptors (possibly across bursts: the builder keeps a partial frame).
#[derive(Default)]
pub struct ChainBuilder {
    head: Option<Packet>,
    /// Last segment of `head`'s chain (meaningful only with a head).
    last: Option<NonNull<BufMeta>>,
}

// SAFETY: the builder owns its chain through `head`; `last` points into that chain.
unsafe impl Send for ChainBuilder {}

impl ChainBuilder {
    /// An empty builder.
    pub const fn new() -> Self {
        ChainBuilder {
            head: None,
            last: None,
        }
    }

    /// Whether a partial packet is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Segments held so far.
    #[inline]
    pub fn nb_segs(&self) -> usize {
        self.head.as_ref().map_or(0, Packet::nb_segs)
    }

    /// Bytes held so far.
    #[inline]
    pub fn len(&self) -> usize {
        self.head.as_ref().map_or(0, Packet::len)
    }

    /// Appends a single-segment packet (its metadata other than the length is ignored unless
    /// it is the first). Refused (and `seg` dropped) past [`MAX_SEGS`] or [`MAX_PKT_LEN`].
    #[inline]
    pub fn push(&mut self, seg: Packet) -> Result<(), PacketError> {
        if !seg.is_contiguous() {
            return Err(PacketError::Chained {
                op: "ChainBuilder::push",
                nb_segs: seg.nb_segs(),
            });
        }
        let (Some(head), Some(last)) = (self.head.as_mut(), self.last) else {
            self.last = Some(seg.meta);
            self.head = Some(seg);
            return Ok(());
        };
        let (nb_segs, len) = chain_limits(head.nb_segs() + 1, head.len() + seg.len())?;
        let s = seg.into_raw();
        // SAFETY: `last` is the last segment of the chain `head` owns (kept by every push);
        // `s` is a single-segment buffer the builder now owns.
        unsafe { (*last.as_ptr()).next = s.0 };
        let h = head.meta_mut();
        h.nb_segs = nb_segs as u16;
        h.pkt_len = len as u32;
        // SAFETY: non-null (it came from a Packet).
        self.last = Some(unsafe { NonNull::new_unchecked(s.0) });
        Ok(())
    }

    /// Takes the packet built so far, leaving the builder empty.
    #[inline]
    pub fn take(&mut self) -> Option<Packet> {
        self.last = None;
        self.head.take()
    }

    /// The head of the packet built so far (to set its metadata).
    #[inline]
    pub fn head_mut(&mut self) -> Option<&mut Packet> {
        self.head.as_mut()
    }
}
