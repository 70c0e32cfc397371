//! A fake NIC that plays the device's side of an advanced descriptor ring in memory, so the ring's
//! logic is tested without hardware (and usable by drivers' own unit tests).
//!
//! Like QEMU's igb model it processes TX descriptors synchronously inside the tail write (unless
//! told to hold them), zeroes the RX write-back area and writes the status (DD) last. Buffer
//! addresses are taken as CPU addresses: use pools over [`IdentityMap`](oxpmd_dma::IdentityMap)
//! and [`HeapRingMemory`](super::HeapRingMemory).

use std::sync::{Arc, Mutex, MutexGuard};

use super::QueueRegs;
use super::desc::{self, rx_read, rx_status, rx_wb, tx};

/// A frame the fake device transmitted, with the offload requests it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFrame {
    /// Bytes read from the buffer.
    pub data: Vec<u8>,
    /// olinfo POPTS bits (IXSM / TXSM).
    pub popts: u32,
    /// The context (vlan_macip_lens, type_tucmd) in force, if one was loaded.
    pub context: Option<(u32, u32)>,
    /// The data descriptor had RS.
    pub rs: bool,
    /// TSE was set: the frame would be cut into segments of this MSS (from the context).
    pub tso_mss: Option<u16>,
}

/// State shared between the test (device side) and the ring's [`FakeRegs`].
#[derive(Debug, Default)]
pub struct FakeState {
    base: usize,
    count: usize,
    /// Device head (next descriptor the device will use).
    pub head: usize,
    /// Last tail written by the driver.
    pub tail: usize,
    /// Tail writes seen.
    pub tail_writes: usize,
    /// Queue disabled (by `QueueRegs::disable`).
    pub disabled: bool,
    /// The queue ignores disable (a device that does not stop): `try_disable` reports failure.
    pub disable_fails: bool,
    /// Stopping the device's DMA fails too (with `disable_fails`: the ring must leak).
    pub stop_dma_fails: bool,
    /// The device's DMA was stopped (by `QueueRegs::stop_device_dma`).
    pub dma_stopped: bool,
    /// Value of the probe (e.g. the pool's free count) when the queue was disabled.
    pub probe_at_disable: Option<usize>,
    /// TX: do not process descriptors at the tail write (complete them with `tx_complete`).
    pub hold_tx: bool,
    /// TX: frames sent.
    pub sent: Vec<SentFrame>,
    /// TX: the context loaded.
    pub context: Option<(u32, u32)>,
    /// TX: the loaded context's mss_l4len_idx.
    pub context_mss_l4len: u32,
    /// TX: the bytes so far of a frame whose EOP descriptor has not been seen, and its PAYLEN.
    tx_partial: Vec<u8>,
    tx_paylen: Option<u32>,
    /// RX: frames dropped because no descriptor was available.
    pub missed: usize,
    /// RX: buffer size the device assumes (SRRCTL.BSIZEPKT), bytes.
    pub rx_buf_size: usize,
    /// RX: write this length into the write-back instead of the real one (a faulty device).
    pub force_len: Option<u16>,
    /// Violations of the ring protocol seen by the device (must stay empty).
    pub violations: Vec<String>,
}

/// A probe evaluated when the queue is disabled (records e.g. the pool's free count).
pub type Probe = Box<dyn Fn() -> usize + Send>;

/// The device side of a fake queue.
#[derive(Clone)]
pub struct FakeDevice {
    state: Arc<Mutex<FakeState>>,
    probe: Arc<Mutex<Option<Probe>>>,
}

/// The queue registers handed to the ring: tail writes and disable go to the fake device.
pub struct FakeRegs {
    dev: FakeDevice,
    is_tx: bool,
}

impl FakeDevice {
    /// A fake device over the ring at `base` of `count` descriptors.
    ///
    /// # Safety
    /// `base` must point to `count` descriptors (16 bytes each, 16-byte aligned) that stay valid
    /// for as long as this device (or a clone, or its registers) is used, and the buffers the
    /// driver posts must be CPU addresses (IOVA = VA) of buffers large enough for the frames.
    pub unsafe fn new(base: *mut u8, count: usize) -> FakeDevice {
        let st = FakeState {
            base: base as usize,
            count,
            rx_buf_size: 2048,
            ..Default::default()
        };
        FakeDevice {
            state: Arc::new(Mutex::new(st)),
            probe: Arc::new(Mutex::new(None)),
        }
    }

    /// Registers for an RX ring.
    pub fn rx_regs(&self) -> FakeRegs {
        FakeRegs {
            dev: self.clone(),
            is_tx: false,
        }
    }

    /// Registers for a TX ring.
    pub fn tx_regs(&self) -> FakeRegs {
        FakeRegs {
            dev: self.clone(),
            is_tx: true,
        }
    }

    /// Sets a probe evaluated at disable time.
    pub fn set_probe(&self, probe: Probe) {
        *self.probe.lock().unwrap_or_else(|p| p.into_inner()) = Some(probe);
    }

    /// The device state.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Receives one frame: writes it into the buffers of the descriptors the device owns
    /// (`[head, tail)`), several if it is longer than one buffer, and writes each back with DD
    /// (EOP on the last). `extra_status` is ORed into the last descriptor's status / error word.
    /// Returns false (and counts a miss) when there are not enough descriptors.
    pub fn receive(&self, frame: &[u8], extra_status: u32, rss: Option<u32>) -> bool {
        let mut st = self.state();
        if st.disabled {
            st.violations.push("receive on a disabled queue".into());
            return false;
        }
        let bs = st.rx_buf_size.max(1);
        let needed = frame.len().div_ceil(bs).max(1);
        let owned = (st.tail + st.count - st.head) % st.count;
        if owned < needed {
            st.missed += 1;
            return false;
        }
        let base = st.base as *mut u8;
        for (k, chunk) in frame
            .chunks(bs)
            .enumerate()
            .chain(frame.is_empty().then_some((0, &[][..])))
        {
            let i = st.head;
            // SAFETY: i < count: inside the ring memory, which outlives the device (constructor
            // contract); the device owns descriptor i (it is in [head, tail)).
            let addr = unsafe { desc::read_u64(base, i, rx_read::PKT_ADDR) };
            if addr == 0 {
                st.violations
                    .push(format!("rx descriptor {i} posted with a zero address"));
                return false;
            }
            // SAFETY: the driver posted `addr` (a CPU address with IdentityMap) with at least
            // `bs` bytes of room; the device owns that buffer now.
            unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), addr as *mut u8, chunk.len()) };
            let last = (k + 1) * bs >= frame.len();
            let mut status = rx_status::DD;
            if last {
                status |= rx_status::EOP | extra_status;
            }
            // SAFETY: as above; write-back zeroed first, status (DD) written last, like QEMU.
            unsafe {
                desc::write_u64(base, i, 0, 0);
                desc::write_u64(base, i, 8, 0);
                if let Some(h) = rss {
                    desc::write_u32(base, i, rx_wb::RSS_HASH, h);
                    desc::field::<u16>(base, i, rx_wb::PKT_INFO).write_volatile(1u16.to_le());
                }
                let len = st.force_len.unwrap_or(chunk.len() as u16);
                desc::field::<u16>(base, i, rx_wb::LENGTH).write_volatile(len.to_le());
                std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
                desc::write_u32(base, i, rx_wb::STATUS_ERROR, status);
            }
            st.head = (i + 1) % st.count;
            if last {
                break;
            }
        }
        true
    }

    /// Descriptors the device owns now (RX: `[head, tail)`).
    pub fn owned(&self) -> usize {
        let st = self.state();
        (st.tail + st.count - st.head) % st.count
    }

    /// Buffer addresses of the descriptors the device owns (RX).
    pub fn posted_addrs(&self) -> Vec<u64> {
        let st = self.state();
        let base = st.base as *mut u8;
        let mut v = Vec::new();
        let mut i = st.head;
        while i != st.tail {
            // SAFETY: i < count, inside the ring memory.
            v.push(unsafe { desc::read_u64(base, i, rx_read::PKT_ADDR) });
            i = (i + 1) % st.count;
        }
        v
    }

    /// TX: processes every descriptor up to the tail (when `hold_tx` kept them).
    pub fn tx_complete(&self) {
        let mut st = self.state();
        Self::process_tx(&mut st);
    }

    fn process_tx(st: &mut FakeState) {
        let base = st.base as *mut u8;
        while st.head != st.tail {
            let i = st.head;
            // SAFETY: i < count: inside the ring; the device owns [head, tail).
            let (addr, cmd, olinfo) = unsafe {
                (
                    desc::read_u64(base, i, tx::BUFFER_ADDR),
                    desc::read_u32(base, i, tx::CMD_TYPE_LEN),
                    desc::read_u32(base, i, tx::OLINFO_STATUS),
                )
            };
            if cmd & tx::DTYP_DATA == tx::DTYP_CTXT {
                // SAFETY: as above.
                let (lens, mss) = unsafe {
                    (
                        desc::read_u32(base, i, tx::CTX_VLAN_MACIP_LENS),
                        desc::read_u32(base, i, tx::CTX_MSS_L4LEN_IDX),
                    )
                };
                st.context = Some((lens, cmd));
                st.context_mss_l4len = mss;
            } else if cmd & tx::DTYP_DATA == tx::DTYP_DATA && cmd & tx::CMD_DEXT != 0 {
                // A frame is the data of its descriptors up to the one with EOP; each carries
                // the frame's PAYLEN.
                let len = (cmd & 0xFFFF) as usize;
                let paylen = olinfo >> tx::PAYLEN_SHIFT;
                if *st.tx_paylen.get_or_insert(paylen) != paylen {
                    st.violations.push(format!(
                        "tx descriptor {i}: PAYLEN {paylen} differs within a frame"
                    ));
                }
                let at = st.tx_partial.len();
                st.tx_partial.resize(at + len, 0);
                // SAFETY: the driver posted `addr` (CPU address under IdentityMap) with `len` bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(addr as *const u8, st.tx_partial[at..].as_mut_ptr(), len)
                };
                let rs = cmd & tx::CMD_RS != 0;
                if cmd & tx::CMD_EOP != 0 {
                    let data = std::mem::take(&mut st.tx_partial);
                    // With TSE, PAYLEN is the TCP payload: the frame less MACLEN, IPLEN, L4LEN.
                    let tso = cmd & tx::CMD_TSE != 0;
                    let headers = match st.context {
                        Some((lens, _)) if tso => {
                            (lens >> tx::CTX_MACLEN_SHIFT & 0x7F)
                                + (lens & 0x1FF)
                                + (st.context_mss_l4len >> tx::CTX_L4LEN_SHIFT & 0xFF)
                        }
                        _ => 0,
                    };
                    let want = (data.len() as u32).checked_sub(headers);
                    if st.tx_paylen.take() != want {
                        st.violations.push(format!(
                            "tx descriptor {i}: PAYLEN {paylen} != frame length {} less headers {headers}",
                            data.len()
                        ));
                    }
                    let tso_mss = tso.then_some((st.context_mss_l4len >> tx::CTX_MSS_SHIFT) as u16);
                    let popts = olinfo & (tx::POPTS_IXSM | tx::POPTS_TXSM);
                    st.sent.push(SentFrame {
                        data,
                        popts,
                        context: st.context,
                        rs,
                        tso_mss,
                    });
                }
                if rs {
                    // SAFETY: as above; DD written back only where RS was set.
                    unsafe { desc::write_u32(base, i, tx::OLINFO_STATUS, tx::STA_DD) };
                }
            } else {
                st.violations
                    .push(format!("tx descriptor {i}: unknown type {cmd:#x}"));
            }
            st.head = (i + 1) % st.count;
        }
    }
}

// SAFETY: the fake device reads and writes the ring only inside `write_tail` (and the test's own
// calls) on this thread, never after `try_disable` / `stop_device_dma` returned true: it marks
// itself disabled and records any later access as a violation.
unsafe impl QueueRegs for FakeRegs {
    fn write_tail(&mut self, tail: u32) {
        let mut st = self.dev.state();
        if tail as usize >= st.count {
            let msg = format!("tail {tail} beyond ring of {}", st.count);
            st.violations.push(msg);
            return;
        }
        if st.disabled {
            st.violations.push("tail write on a disabled queue".into());
        }
        st.tail = tail as usize;
        st.tail_writes += 1;
        if self.is_tx && !st.hold_tx {
            FakeDevice::process_tx(&mut st);
        }
    }

    fn disable(&mut self) {
        self.try_disable();
    }

    fn try_disable(&mut self) -> bool {
        if self.dev.state().disable_fails {
            return false;
        }
        let probe = self
            .dev
            .probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|p| p());
        let mut st = self.dev.state();
        st.disabled = true;
        st.probe_at_disable = probe;
        true
    }

    fn stop_device_dma(&mut self) -> bool {
        let mut st = self.dev.state();
        if st.stop_dma_fails {
            return false;
        }
        st.dma_stopped = true;
        true
    }
}

/// Registers that only record the tail (a volatile store), for benchmarks: no lock, no device.
#[derive(Debug, Default)]
pub struct BenchRegs {
    tail: u32,
}

impl BenchRegs {
    /// Last tail written.
    pub fn tail(&self) -> u32 {
        self.tail
    }
}

// SAFETY: there is no device: the benchmark writes the write-backs itself, synchronously, and
// never after the ring's drop began.
unsafe impl QueueRegs for BenchRegs {
    #[inline(always)]
    fn write_tail(&mut self, tail: u32) {
        // SAFETY: a valid, aligned, exclusively borrowed u32; volatile so it is not optimised out
        // (it stands in for the MMIO store).
        unsafe { std::ptr::write_volatile(&mut self.tail, tail) };
    }

    fn disable(&mut self) {}
}

/// Writes device write-backs directly, for benchmarks: marks RX descriptors done and TX RS
/// descriptors done, without any locking or copying.
#[derive(Debug)]
pub struct WritebackWriter {
    base: *mut u8,
    count: usize,
}

impl WritebackWriter {
    /// A writer over the ring at `base` of `count` descriptors (a power of two).
    ///
    /// # Safety
    /// As [`FakeDevice::new`]: `base` is valid for `count` descriptors while the writer is used.
    pub unsafe fn new(base: *mut u8, count: usize) -> WritebackWriter {
        assert!(count.is_power_of_two());
        WritebackWriter { base, count }
    }

    /// RX: writes back descriptor `idx` (mod count) as a complete frame of `len` bytes (DD | EOP),
    /// status last.
    pub fn rx_done(&mut self, idx: usize, len: u16) {
        let i = idx & (self.count - 1);
        // SAFETY: i < count, inside the ring (constructor contract).
        unsafe {
            desc::field::<u16>(self.base, i, rx_wb::LENGTH).write_volatile(len.to_le());
            desc::write_u32(self.base, i, rx_wb::STATUS_ERROR, rx_status::DD | rx_status::EOP);
        }
    }

    /// TX: sets DD on every descriptor in `[from, to)` (mod count) that carries RS.
    pub fn tx_done(&mut self, from: usize, to: usize) {
        for idx in from..to {
            let i = idx & (self.count - 1);
            // SAFETY: i < count, inside the ring (constructor contract).
            unsafe {
                if desc::read_u32(self.base, i, tx::CMD_TYPE_LEN) & tx::CMD_RS != 0 {
                    desc::write_u32(self.base, i, tx::OLINFO_STATUS, tx::STA_DD);
                }
            }
        }
    }
}
