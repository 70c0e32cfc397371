//! Where a pool's buffers lie in its DMA region: page-aware carving.
//!
//! A buffer (headroom + data room) never crosses a page of the region: each page holds
//! `page / stride` buffers from its start and leaves the rest unused, as DPDK's mempool populate
//! does for memory that is not IOVA-contiguous. The IOMMU maps a region page by page (2 MiB
//! superpages for hugepage regions), and a device model that translates a buffer in one piece
//! (QEMU's igb: `hw/net/igb_core.c` maps each TX buffer with one `pci_dma_map` and drops the frame
//! when the mapping comes back shorter) then never sees a buffer split across two translations.
//!
//! A *chunked* pool (an AF_XDP UMEM, whose aligned mode addresses frames as `addr & !(chunk - 1)`)
//! rounds the stride up to a power of two instead of 64: pages are powers of two too, so buffer
//! `i` then starts at `i * stride`, a multiple of the stride.
#![forbid(unsafe_code)]

use crate::region::PageSize;

/// Buffers start on this boundary (a cache line; also what DMA engines like).
pub(crate) const BUFFER_ALIGN: usize = 64;

/// The carving of one pool: `capacity` buffers of `stride` bytes, `per_page` per page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BufferLayout {
    /// Bytes from one buffer to the next within a page (buffer length rounded up to 64).
    pub(crate) stride: usize,
    /// Buffers per page.
    pub(crate) per_page: usize,
    /// Page size in bytes.
    pub(crate) page: usize,
    /// Pages of the region.
    pub(crate) pages: usize,
}

/// Why a pool cannot be carved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayoutError {
    /// One buffer is larger than a page.
    BufferLargerThanPage { stride: usize, page: usize },
    /// The region length overflows.
    TooLarge,
}

impl BufferLayout {
    /// The layout of `capacity` buffers of `buf_len` bytes on `page` pages; `chunked`: each buffer
    /// at a multiple of its stride, a power of two (see the module documentation).
    pub(crate) fn new(
        capacity: usize,
        buf_len: usize,
        page: PageSize,
        chunked: bool,
    ) -> Result<Self, LayoutError> {
        let page = page.bytes();
        let stride = if chunked {
            buf_len.next_power_of_two().max(BUFFER_ALIGN)
        } else {
            buf_len.next_multiple_of(BUFFER_ALIGN)
        };
        if stride > page {
            return Err(LayoutError::BufferLargerThanPage { stride, page });
        }
        let per_page = page / stride;
        let pages = capacity.div_ceil(per_page);
        pages.checked_mul(page).ok_or(LayoutError::TooLarge)?;
        Ok(BufferLayout {
            stride,
            per_page,
            page,
            pages,
        })
    }

    /// Bytes of the region.
    pub(crate) fn region_len(&self) -> usize {
        self.pages * self.page
    }

    /// Offset of buffer `i` from the region start.
    #[inline]
    pub(crate) fn offset(&self, i: usize) -> usize {
        (i / self.per_page) * self.page + (i % self.per_page) * self.stride
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_buffer_crosses_a_page_and_none_overlap() {
        for (buf_len, page) in [
            (2176, PageSize::Huge2M),
            (2176, PageSize::Base4K),
            (4096, PageSize::Base4K),
            (9128, PageSize::Huge2M),
            (65, PageSize::Base4K),
        ] {
            let cap = 3000;
            let l = BufferLayout::new(cap, buf_len, page, false).unwrap();
            let mut last_end = 0;
            for i in 0..cap {
                let off = l.offset(i);
                assert_eq!(off % BUFFER_ALIGN, 0);
                assert!(off >= last_end, "buffer {i} overlaps the one before");
                assert_eq!(
                    off / l.page,
                    (off + buf_len - 1) / l.page,
                    "buffer {i} crosses a page"
                );
                assert!(off + buf_len <= l.region_len());
                last_end = off + buf_len;
            }
        }
    }

    #[test]
    fn two_mib_pages_hold_963_default_buffers() {
        let l = BufferLayout::new(8192, 128 + 2048, PageSize::Huge2M, false).unwrap();
        assert_eq!((l.stride, l.per_page, l.pages), (2176, 963, 9));
        assert_eq!(l.offset(963), 2 << 20);
        assert_eq!(l.offset(962), 962 * 2176);
    }

    #[test]
    fn chunked_buffers_start_at_multiples_of_their_power_of_two_stride() {
        for (buf_len, page, stride) in [
            (2048, PageSize::Huge2M, 2048),
            (128 + 2048, PageSize::Huge2M, 4096),
            (2000, PageSize::Base4K, 2048),
            (4096, PageSize::Base4K, 4096),
        ] {
            let l = BufferLayout::new(5000, buf_len, page, true).unwrap();
            assert_eq!(l.stride, stride);
            for i in 0..5000 {
                assert_eq!(l.offset(i), i * stride, "buffer {i} of {buf_len} on {page:?}");
            }
        }
        assert_eq!(
            BufferLayout::new(8, 4097, PageSize::Base4K, true),
            Err(LayoutError::BufferLargerThanPage {
                stride: 8192,
                page: 4096
            })
        );
    }

    #[test]
    fn a_buffer_larger_than_a_page_is_refused() {
        assert_eq!(
            BufferLayout::new(8, 9000 + 128, PageSize::Base4K, false),
            Err(LayoutError::BufferLargerThanPage {
                stride: 9152,
                page: 4096
            })
        );
        assert_eq!(
            BufferLayout::new(usize::MAX / 2, 2176, PageSize::Base4K, false),
            Err(LayoutError::TooLarge)
        );
    }
}
