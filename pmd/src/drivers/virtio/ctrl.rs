//! The virtio-net control virtqueue: synchronous commands (RX mode, MAC address and filter table,
//! VLAN filter, number of queue pairs), one at a time, off the datapath.
//!
//! Each command is a three-descriptor chain over a small command buffer in DMA memory: the
//! `{class, command}` header and the data (device-readable), then the one-byte ack
//! (device-writable). The driver publishes it, rings the doorbell, and polls the used ring until
//! the chain comes back (with a time limit), then reads the ack.
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use super::queue::Doorbell;
use super::regs::ctrl;
use super::split::{Seg, Used, Virtqueue};
use crate::adv_ring::RingMemory;

/// Most data bytes one command carries: a MAC filter table of [`MAX_TABLE_ENTRIES`] addresses
/// (two le32 counts and 6 bytes an address).
pub const MAX_DATA: usize = 4 + 4 + 6 * MAX_TABLE_ENTRIES;
/// Most addresses of a MAC filter table command (unicast and multicast together).
pub const MAX_TABLE_ENTRIES: usize = 64;
/// Offsets in the command buffer: the header, the ack, then the data.
const HDR: usize = 0;
const ACK: usize = 8;
const DATA: usize = 16;
/// Bytes of command buffer needed after the ring.
pub const BUFFER_BYTES: usize = (DATA + MAX_DATA).next_multiple_of(64);
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

/// Sends control commands (object-safe, so the driver holds either ring kind).
pub trait CtrlCommand: Send {
    /// Sends one command and waits for the device's answer.
    fn command(&mut self, class: u8, cmd: u8, data: &[u8]) -> Result<(), CtrlError>;
}

/// The control queue.
pub struct CtrlQueue<D: Doorbell, Q: Virtqueue, B: RingMemory> {
    ring: Q,
    /// Memory of the command buffer (kept alive; accessed through `buf`).
    _buf_mem: B,
    buf: *mut u8,
    buf_iova: u64,
    doorbell: D,
}

// SAFETY: the ring and the command buffer memory are owned by the queue.
unsafe impl<D: Doorbell, Q: Virtqueue, B: RingMemory> Send for CtrlQueue<D, Q, B> {}

impl<D: Doorbell, Q: Virtqueue, B: RingMemory> CtrlQueue<D, Q, B> {
    /// Takes an empty `ring` and [`BUFFER_BYTES`] of DMA memory for the command buffer; `None`
    /// when the memory is too small.
    pub fn new(ring: Q, buf_mem: B, doorbell: D) -> Option<Self> {
        if buf_mem.len() < BUFFER_BYTES {
            return None;
        }
        Some(CtrlQueue {
            buf: buf_mem.as_ptr(),
            buf_iova: buf_mem.iova(),
            _buf_mem: buf_mem,
            ring,
            doorbell,
        })
    }

    /// The ring (addresses for the device).
    pub fn ring(&self) -> &Q {
        &self.ring
    }
}

impl<D: Doorbell, Q: Virtqueue, B: RingMemory> CtrlCommand for CtrlQueue<D, Q, B> {
    fn command(&mut self, class: u8, cmd: u8, data: &[u8]) -> Result<(), CtrlError> {
        let invalid = |reason| CtrlError::Invalid { class, cmd, reason };
        if data.is_empty() || data.len() > MAX_DATA {
            return Err(invalid("data empty or longer than the command buffer"));
        }
        if self.ring.in_flight() != 0 {
            return Err(invalid("a previous command never came back; reopen the port"));
        }
        // SAFETY: the command buffer holds BUFFER_BYTES (checked in `new`); no command is in
        // flight, so the device does not access it now.
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
                Some(Used::BadLen { id, .. }) if id == head => {
                    return Err(invalid(
                        "the device reported more bytes written than the 1-byte ack",
                    ));
                }
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
