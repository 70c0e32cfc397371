//! The virtio-net control virtqueue: synchronous commands (RX mode, MAC address, number of queue
//! pairs), one at a time, off the datapath.
//!
//! Each command is a three-descriptor chain over a small command buffer in DMA memory: the
//! `{class, command}` header and the data (device-readable), then the one-byte ack
//! (device-writable). The driver publishes it, rings the doorbell, and polls the used ring until
//! the chain comes back (with a time limit), then reads the ack.
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use super::queue::Doorbell;
use super::regs::ctrl;
use super::split::{Seg, SplitRing, Used};
use crate::adv_ring::RingMemory;

/// Most data bytes one command carries (a MAC address: 6).
pub const MAX_DATA: usize = 8;
/// Offsets in the command buffer.
const HDR: usize = 0;
const DATA: usize = 16;
const ACK: usize = 32;
/// Bytes of command buffer needed after the ring.
pub const BUFFER_BYTES: usize = 64;
/// How long the device may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtrlError {
    /// The device answered with an error.
    #[error("control command class {class} command {cmd}: the device answered {ack} (not OK)")]
    Refused {
        /// Class.
        class: u8,
        /// Command.
        cmd: u8,
        /// Ack byte.
        ack: u8,
    },
    /// No answer in time.
    #[error("control command class {class} command {cmd}: no answer within {TIMEOUT:?}")]
    Timeout {
        /// Class.
        class: u8,
        /// Command.
        cmd: u8,
    },
    /// Data too long, or the ring had no room (a previous command never came back).
    #[error("control command class {class} command {cmd}: {reason}")]
    Invalid {
        /// Class.
        class: u8,
        /// Command.
        cmd: u8,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The control queue.
pub struct CtrlQueue<D: Doorbell, M: RingMemory> {
    ring: SplitRing<M>,
    buf: *mut u8,
    buf_iova: u64,
    doorbell: D,
}

// SAFETY: the ring and its command buffer (inside the ring memory) are owned by the queue.
unsafe impl<D: Doorbell, M: RingMemory> Send for CtrlQueue<D, M> {}

impl<D: Doorbell, M: RingMemory> CtrlQueue<D, M> {
    /// Builds a ring of `size` entries in `mem`, which must hold the ring layout plus
    /// [`BUFFER_BYTES`] (16-aligned after it). `None` when it does not fit.
    pub fn new(mem: M, doorbell: D, size: usize) -> Option<Self> {
        let layout = super::split::SplitLayout::new(size)?;
        let off = layout.bytes.next_multiple_of(16);
        if mem.len() < off + BUFFER_BYTES {
            return None;
        }
        let buf = mem.as_ptr().wrapping_add(off);
        let buf_iova = mem.iova() + off as u64;
        let ring = SplitRing::new(mem, size).ok()?;
        Some(CtrlQueue {
            ring,
            buf,
            buf_iova,
            doorbell,
        })
    }

    /// The ring (addresses for the device).
    pub fn ring(&self) -> &SplitRing<M> {
        &self.ring
    }

    /// Sends one command and waits for the device's answer.
    pub fn command(&mut self, class: u8, cmd: u8, data: &[u8]) -> Result<(), CtrlError> {
        let invalid = |reason| CtrlError::Invalid { class, cmd, reason };
        if data.is_empty() || data.len() > MAX_DATA {
            return Err(invalid("data must be 1..=8 bytes"));
        }
        if self.ring.in_flight() != 0 {
            return Err(invalid("a previous command never came back; reopen the port"));
        }
        // SAFETY: the command buffer lies after the ring inside its memory (checked in `new`); no
        // command is in flight, so the device does not access it now.
        unsafe {
            self.buf.add(HDR).write_volatile(class);
            self.buf.add(HDR + 1).write_volatile(cmd);
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.buf.add(DATA), data.len());
            self.buf.add(ACK).write_volatile(0xFF);
        }
        let segs = [
            Seg {
                addr: self.buf_iova + HDR as u64,
                len: 2,
                write: false,
            },
            Seg {
                addr: self.buf_iova + DATA as u64,
                len: data.len() as u32,
                write: false,
            },
            Seg {
                addr: self.buf_iova + ACK as u64,
                len: 1,
                write: true,
            },
        ];
        let head = self
            .ring
            .add(&segs)
            .ok_or_else(|| invalid("no free descriptor"))?;
        self.ring.publish();
        self.doorbell.notify();
        let t = Instant::now();
        loop {
            match self.ring.pop_used() {
                Some(Used::Chain { id, .. }) if id == head => break,
                Some(_) => return Err(invalid("the device returned an unknown chain")),
                None if t.elapsed() > TIMEOUT => return Err(CtrlError::Timeout { class, cmd }),
                None => std::thread::sleep(Duration::from_micros(50)),
            }
        }
        // SAFETY: the chain came back (used entry read after the acquire fence): the device is
        // done with the ack byte.
        let ack = unsafe { self.buf.add(ACK).read_volatile() };
        if ack != ctrl::OK {
            return Err(CtrlError::Refused { class, cmd, ack });
        }
        Ok(())
    }
}
