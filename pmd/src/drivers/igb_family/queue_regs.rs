//! The register block of one 82576 queue (the same in the PF's and in a VF's BAR0), and where
//! the blocks of a function lie.
#![forbid(unsafe_code)]
#![allow(clippy::unreadable_literal)]

use super::Dir;

/// A register of a queue's block: its byte offset from the block's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueReg(usize);

impl QueueReg {
    /// Descriptor base address low (both directions).
    pub(crate) const DBAL: QueueReg = QueueReg(0x00);
    /// Descriptor base address high.
    pub(crate) const DBAH: QueueReg = QueueReg(0x04);
    /// Descriptor ring length in bytes (multiple of 128).
    pub(crate) const DLEN: QueueReg = QueueReg(0x08);
    /// RX: split and replication control.
    pub(crate) const SRRCTL: QueueReg = QueueReg(0x0C);
    /// Head.
    pub(crate) const DH: QueueReg = QueueReg(0x10);
    /// Tail.
    pub(crate) const DT: QueueReg = QueueReg(0x18);
    /// Queue control (RXDCTL / TXDCTL).
    pub(crate) const DCTL: QueueReg = QueueReg(0x28);

    /// The offset from the block's start.
    pub(crate) const fn off(self) -> usize {
        self.0
    }
}

/// RXDCTL / TXDCTL: queue enable.
pub const DCTL_ENABLE: u32 = 1 << 25;
/// SRRCTL: packet buffer size field (1 KiB units, bits 6:0).
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x7F;
/// SRRCTL: advanced one-buffer descriptors.
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 0x0200_0000;
/// SRRCTL: drop frames when the queue has no descriptor (instead of stalling the port).
pub const SRRCTL_DROP_EN: u32 = 0x8000_0000;
/// SRRCTL.BSIZEPKT counts in units of this many bytes.
pub const SRRCTL_BSIZEPKT_UNIT: usize = 1024;

/// SRRCTL.BSIZEPKT for buffers of `data_room` bytes behind the descriptor's address: whole KiB,
/// rounded down, so the device never writes past the buffer (the next buffer's headroom lies
/// right after it). `None` when `data_room` is below one KiB.
pub fn srrctl_bsizepkt(data_room: usize) -> Option<u32> {
    let kib = (data_room / SRRCTL_BSIZEPKT_UNIT).min(SRRCTL_BSIZEPKT_MASK as usize);
    (kib > 0).then_some(kib as u32)
}

/// Where a function's queue blocks lie: RX queue `q` at `rx + stride * q`, TX queue `q` at
/// `tx + stride * q`, for `q` below `queues`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueBlocks {
    pub(crate) rx: usize,
    pub(crate) tx: usize,
    pub(crate) stride: usize,
    pub(crate) queues: u16,
}

impl QueueBlocks {
    /// The byte offset of register `r` of queue `q` of `dir`.
    ///
    /// # Panics
    /// When `q` is not below `queues` (a caller's bug: queue numbers are checked against the
    /// device's count before they reach a driver).
    pub(crate) const fn offset(&self, dir: Dir, q: u16, r: QueueReg) -> usize {
        assert!(q < self.queues, "queue number past the device's queues");
        let base = match dir {
            Dir::Rx => self.rx,
            Dir::Tx => self.tx,
        };
        base + self.stride * q as usize + r.off()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_sizes_round_down_to_whole_kib() {
        assert_eq!(srrctl_bsizepkt(2048), Some(2));
        assert_eq!(srrctl_bsizepkt(3000), Some(2));
        assert_eq!(srrctl_bsizepkt(1023), None);
        assert_eq!(srrctl_bsizepkt(1 << 20), Some(SRRCTL_BSIZEPKT_MASK));
    }

    #[test]
    fn blocks_place_each_queue_at_its_stride() {
        let b = QueueBlocks {
            rx: 0xC000,
            tx: 0xE000,
            stride: 0x40,
            queues: 16,
        };
        assert_eq!(b.offset(Dir::Rx, 3, QueueReg::DCTL), 0xC0E8);
        assert_eq!(b.offset(Dir::Tx, 0, QueueReg::DT), 0xE018);
    }

    #[test]
    #[should_panic(expected = "queue number")]
    fn a_queue_past_the_count_is_a_bug() {
        let b = QueueBlocks {
            rx: 0x2800,
            tx: 0x3800,
            stride: 0x100,
            queues: 2,
        };
        let _ = b.offset(Dir::Rx, 2, QueueReg::DBAL);
    }
}
