//! Packet capture off the datapath: workers copy frames into preallocated records and hand them
//! through a bounded lock-free ring to a writer thread that writes a classic pcap file.
//!
//! - [`Capture::start`] preallocates `slots` records (each `record_len` bytes), puts them on a free
//!   ring and starts the writer thread (pcap with nanosecond timestamps, magic `0xa1b23c4d`,
//!   `LINKTYPE_ETHERNET`, snaplen 65535, written through a `BufWriter`).
//! - [`Capture::tap`] gives a worker a [`CaptureTap`]; [`CaptureTap::capture`] takes a free record
//!   (one ring dequeue), copies at most `record_len` bytes of the frame into it and enqueues it for
//!   the writer. No system call, no allocation, no lock; when no record is free (the writer is
//!   behind) the frame is not captured and the tap's drop counter grows: the worker never waits.
//! - [`Capture::finish`] (after the workers stopped) lets the writer drain the ring, flushes the
//!   file and returns the captured / dropped counts.
//!
//! [`read_pcap`] parses a classic pcap file (both magics, both byte orders) for tests and tools.
//! [`json_escape`] and [`port_stats_json`] write the examples' `--stats-json` objects by hand (no
//! JSON crate in the library).

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use oxpmd_dma::{Ring, RingError};

use crate::stats::{PortStats, QueueCounters};

/// Magic of a classic pcap file with microsecond timestamps.
pub const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
/// Magic of a classic pcap file with nanosecond timestamps (what [`PcapWriter`] writes).
pub const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
/// Link type of Ethernet frames.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Snap length written in the global header.
pub const DEFAULT_SNAPLEN: u32 = 65535;
/// Length of the pcap global header.
pub const GLOBAL_HEADER_LEN: usize = 24;
/// Length of a pcap record header.
pub const RECORD_HEADER_LEN: usize = 16;

/// The 24-byte global header (little-endian, nanosecond magic, version 2.4, Ethernet).
pub fn global_header(snaplen: u32) -> [u8; GLOBAL_HEADER_LEN] {
    let mut h = [0u8; GLOBAL_HEADER_LEN];
    h[0..4].copy_from_slice(&PCAP_MAGIC_NS.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone (4) and sigfigs (4) stay 0.
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// The 16-byte record header: timestamp (seconds, nanoseconds), captured and original length.
pub fn record_header(ts_ns: u64, incl_len: u32, orig_len: u32) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&((ts_ns % 1_000_000_000) as u32).to_le_bytes());
    h[8..12].copy_from_slice(&incl_len.to_le_bytes());
    h[12..16].copy_from_slice(&orig_len.to_le_bytes());
    h
}

/// Writes a classic pcap stream (nanosecond timestamps) to `W`.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W, snaplen: u32) -> io::Result<Self> {
        out.write_all(&global_header(snaplen))?;
        Ok(PcapWriter { out, snaplen })
    }

    /// Writes one record: `data` (cut to the snap length) of a frame of `orig_len` bytes.
    pub fn write_record(&mut self, ts_ns: u64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let incl = data.len().min(self.snaplen as usize);
        self.out
            .write_all(&record_header(ts_ns, incl as u32, orig_len.max(incl as u32)))?;
        self.out.write_all(&data[..incl])
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Nanoseconds since the Unix epoch (a vDSO clock read, no system call on Linux x86-64).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One captured frame, preallocated and recycled.
#[derive(Debug)]
struct Record {
    ts_ns: u64,
    orig_len: u32,
    len: u32,
    data: Box<[u8]>,
}

/// Settings of a [`Capture`].
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Records in flight (a power of two, 2..=65536): frames the writer may be behind by.
    pub slots: usize,
    /// Bytes kept per frame (1..=65535); longer frames are cut (pcap `incl_len < orig_len`).
    pub record_len: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            slots: 4096,
            record_len: 2048,
        }
    }
}

/// Why a capture could not be started or finished.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Bad configuration.
    #[error("capture: {0}")]
    Config(String),
    /// A ring could not be created.
    #[error("capture: creating the record ring: {0}")]
    Ring(#[from] RingError),
    /// The pcap file could not be created.
    #[error("capture: creating {path}: {source} (is the directory writable?)")]
    Create {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing the pcap file failed.
    #[error("capture: writing {path}: {source}")]
    Write {
        /// The file (or `<writer>`).
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The writer thread could not start or panicked.
    #[error("capture: writer thread: {0}")]
    Thread(String),
}

/// Counters of one tap, published with relaxed stores by the tap's owner only.
#[derive(Debug, Default)]
struct TapCounters {
    captured: AtomicU64,
    dropped: AtomicU64,
}

struct Shared {
    free: Ring<Box<Record>>,
    full: Ring<Box<Record>>,
    stop: AtomicBool,
    taps: Mutex<Vec<Arc<TapCounters>>>,
}

/// What a capture did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CaptureReport {
    /// Frames handed to the writer by the taps.
    pub captured: u64,
    /// Frames not captured because no record was free.
    pub dropped: u64,
    /// Records written to the file.
    pub written: u64,
}

/// A running capture: the rings and the writer thread.
pub struct Capture {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<io::Result<u64>>>,
    path: PathBuf,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").field("path", &self.path).finish()
    }
}

impl Capture {
    /// Creates `path` and starts a capture writing to it.
    pub fn start(path: &Path, cfg: &CaptureConfig) -> Result<Capture, CaptureError> {
        let file = File::create(path).map_err(|source| CaptureError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        Self::with_writer(BufWriter::with_capacity(1 << 20, file), cfg, path)
    }

    /// Starts a capture writing to `out` (`label` names it in errors).
    pub fn with_writer<W: Write + Send + 'static>(
        out: W,
        cfg: &CaptureConfig,
        label: &Path,
    ) -> Result<Capture, CaptureError> {
        if !(2..=65536).contains(&cfg.slots) || !cfg.slots.is_power_of_two() {
            return Err(CaptureError::Config(format!(
                "{} slots: need a power of two in 2..=65536",
                cfg.slots
            )));
        }
        if !(1..=DEFAULT_SNAPLEN as usize).contains(&cfg.record_len) {
            return Err(CaptureError::Config(format!(
                "record length {}: need 1..=65535",
                cfg.record_len
            )));
        }
        let free = Ring::new(cfg.slots)?;
        let full = Ring::new(cfg.slots)?;
        for _ in 0..cfg.slots {
            let r = Box::new(Record {
                ts_ns: 0,
                orig_len: 0,
                len: 0,
                data: vec![0u8; cfg.record_len].into_boxed_slice(),
            });
            if free.enqueue(r).is_err() {
                return Err(CaptureError::Config(
                    "free ring smaller than its slot count".into(),
                ));
            }
        }
        let shared = Arc::new(Shared {
            free,
            full,
            stop: AtomicBool::new(false),
            taps: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let writer = std::thread::Builder::new()
            .name("pcap-writer".into())
            .spawn(move || writer_loop(out, &sh))
            .map_err(|e| CaptureError::Thread(e.to_string()))?;
        Ok(Capture {
            shared,
            writer: Some(writer),
            path: label.to_path_buf(),
        })
    }

    /// A handle for one worker thread.
    pub fn tap(&self) -> CaptureTap {
        let counters = Arc::new(TapCounters::default());
        self.shared
            .taps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(counters.clone());
        CaptureTap {
            shared: self.shared.clone(),
            counters,
            captured: 0,
            dropped: 0,
        }
    }

    /// Captured and dropped so far (as last published by the taps).
    pub fn counts(&self) -> (u64, u64) {
        let taps = self.shared.taps.lock().unwrap_or_else(|e| e.into_inner());
        taps.iter().fold((0, 0), |(c, d), t| {
            (
                c + t.captured.load(Ordering::Relaxed),
                d + t.dropped.load(Ordering::Relaxed),
            )
        })
    }

    /// Stops the writer once it has written every queued record, flushes the file and reports.
    /// Call it after the workers stopped capturing.
    pub fn finish(mut self) -> Result<CaptureReport, CaptureError> {
        self.shared.stop.store(true, Ordering::Release);
        let written = match self.writer.take().map(|h| h.join()) {
            Some(Ok(Ok(n))) => n,
            Some(Ok(Err(source))) => {
                return Err(CaptureError::Write {
                    path: self.path.clone(),
                    source,
                });
            }
            Some(Err(_)) => return Err(CaptureError::Thread("the writer thread panicked".into())),
            None => 0,
        };
        let (captured, dropped) = self.counts();
        Ok(CaptureReport {
            captured,
            dropped,
            written,
        })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

fn writer_loop<W: Write>(out: W, shared: &Shared) -> io::Result<u64> {
    let mut w = PcapWriter::new(out, DEFAULT_SNAPLEN)?;
    // The header reaches the file at once: a reader sees a valid (empty) capture early.
    w.flush()?;
    let mut written = 0u64;
    loop {
        match shared.full.dequeue() {
            Some(r) => {
                let res = w.write_record(r.ts_ns, r.orig_len, &r.data[..r.len as usize]);
                // Recycling cannot fail: the free ring has room for every record.
                let _ = shared.free.enqueue(r);
                res?;
                written += 1;
            }
            None => {
                if shared.stop.load(Ordering::Acquire) && shared.full.is_empty() {
                    break;
                }
                w.flush()?;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    w.flush()?;
    Ok(written)
}

/// A worker's handle on a [`Capture`]: `Send`, one per thread.
pub struct CaptureTap {
    shared: Arc<Shared>,
    counters: Arc<TapCounters>,
    captured: u64,
    dropped: u64,
}

impl std::fmt::Debug for CaptureTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureTap")
            .field("captured", &self.captured)
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl CaptureTap {
    /// Copies `frame` (up to the record length) into a free record and queues it for the writer.
    /// Returns false (and counts a drop) when no record is free. Never blocks, never allocates.
    #[inline]
    pub fn capture(&mut self, frame: &[u8], ts_ns: u64) -> bool {
        self.capture_segments(core::iter::once(frame), frame.len(), ts_ns)
    }

    /// Captures a packet whole, every segment of a chained one, as [`CaptureTap::capture`] does
    /// a frame.
    #[inline]
    pub fn capture_packet(&mut self, pkt: &oxpmd_dma::Packet, ts_ns: u64) -> bool {
        self.capture_segments(pkt.segments(), pkt.len(), ts_ns)
    }

    #[inline]
    fn capture_segments<'a>(&mut self, segs: impl Iterator<Item = &'a [u8]>, len: usize, ts_ns: u64) -> bool {
        let Some(mut r) = self.shared.free.dequeue() else {
            self.dropped += 1;
            return false;
        };
        let mut n = 0;
        for seg in segs {
            let k = seg.len().min(r.data.len() - n);
            r.data[n..n + k].copy_from_slice(&seg[..k]);
            n += k;
        }
        r.len = n as u32;
        r.orig_len = len.min(u32::MAX as usize) as u32;
        r.ts_ns = ts_ns;
        match self.shared.full.enqueue(r) {
            Ok(()) => self.captured += 1,
            Err(r) => {
                // Cannot happen (both rings hold every record); keep the record anyway.
                let _ = self.shared.free.enqueue(r);
                self.dropped += 1;
                return false;
            }
        }
        true
    }

    /// Publishes this tap's counters for [`Capture::counts`] (relaxed stores; call once per
    /// burst or less often).
    #[inline]
    pub fn publish(&self) {
        self.counters.captured.store(self.captured, Ordering::Relaxed);
        self.counters.dropped.store(self.dropped, Ordering::Relaxed);
    }

    /// Frames captured by this tap.
    pub fn captured(&self) -> u64 {
        self.captured
    }

    /// Frames this tap could not capture.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl Drop for CaptureTap {
    fn drop(&mut self) {
        self.publish();
    }
}

/// The global header of a parsed pcap file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcapHeader {
    /// Timestamps are nanoseconds (else microseconds).
    pub nanos: bool,
    /// Major, minor version.
    pub version: (u16, u16),
    /// Snap length.
    pub snaplen: u32,
    /// Link type.
    pub linktype: u32,
}

/// One parsed pcap record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapRecord {
    /// Timestamp in nanoseconds.
    pub ts_ns: u64,
    /// Original frame length.
    pub orig_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

/// Why a pcap file did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapParseError {
    /// Shorter than a global header.
    #[error("pcap: {0} bytes, shorter than the 24-byte global header")]
    Short(usize),
    /// Unknown magic.
    #[error("pcap: unknown magic {0:#010x}")]
    Magic(u32),
    /// A record is cut off or longer than the snap length.
    #[error("pcap: record {index} at byte {offset}: {what}")]
    Record {
        /// Record number (0-based).
        index: usize,
        /// Byte offset of its header.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
}

/// Parses a classic pcap file (either magic, either byte order).
pub fn read_pcap(b: &[u8]) -> Result<(PcapHeader, Vec<PcapRecord>), PcapParseError> {
    if b.len() < GLOBAL_HEADER_LEN {
        return Err(PcapParseError::Short(b.len()));
    }
    let raw = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (le, nanos) = match raw {
        PCAP_MAGIC_US => (true, false),
        PCAP_MAGIC_NS => (true, true),
        m if m.swap_bytes() == PCAP_MAGIC_US => (false, false),
        m if m.swap_bytes() == PCAP_MAGIC_NS => (false, true),
        m => return Err(PcapParseError::Magic(m)),
    };
    let u32_at = |o: usize| {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let u16_at = |o: usize| {
        let a = [b[o], b[o + 1]];
        if le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    };
    let hdr = PcapHeader {
        nanos,
        version: (u16_at(4), u16_at(6)),
        snaplen: u32_at(16),
        linktype: u32_at(20),
    };
    let mut recs = Vec::new();
    let mut off = GLOBAL_HEADER_LEN;
    while off < b.len() {
        let err = |what| PcapParseError::Record {
            index: recs.len(),
            offset: off,
            what,
        };
        if b.len() - off < RECORD_HEADER_LEN {
            return Err(err("header cut off"));
        }
        let (sec, frac, incl, orig) = (u32_at(off), u32_at(off + 4), u32_at(off + 8), u32_at(off + 12));
        let incl = incl as usize;
        if incl > hdr.snaplen as usize || incl > orig as usize {
            return Err(err("captured length beyond the snap or original length"));
        }
        let start = off + RECORD_HEADER_LEN;
        if b.len() - start < incl {
            return Err(err("data cut off"));
        }
        let frac_ns = if nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1000
        };
        recs.push(PcapRecord {
            ts_ns: u64::from(sec) * 1_000_000_000 + frac_ns,
            orig_len: orig,
            data: b[start..start + incl].to_vec(),
        });
        off = start + incl;
    }
    Ok((hdr, recs))
}

/// `s` as a JSON string literal, quotes included (RFC 8259 escaping: `"`, `\`, control characters).
pub fn json_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// One port's counters as a JSON object: totals (`ipackets`, `opackets`, `ibytes`, `obytes`,
/// `imissed`, `ierrors`, `oerrors`, `rx_nombuf`), rates since `prev` over `dt_s` seconds (from zero
/// without `prev`: `ipps`, `opps`, `ibps`, `obps`, bits per second) and per-queue `rx_queues` /
/// `tx_queues` (`packets`, `bytes`, `ierrors`, `rx_nombuf`, `pps`, `bps`).
pub fn port_stats_json(id: u16, name: &str, st: &PortStats, prev: Option<&PortStats>, dt_s: f64) -> String {
    let dt = if dt_s.is_finite() { dt_s.max(1e-9) } else { 1.0 };
    let rate = |now: u64, before: Option<u64>| now.saturating_sub(before.unwrap_or(0)) as f64 / dt;
    let queues = |qs: &[QueueCounters], lq: Option<&Vec<QueueCounters>>| {
        let v: Vec<String> = qs
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let lp = lq.and_then(|v| v.get(i));
                format!(
                    "{{\"queue\":{i},\"packets\":{},\"bytes\":{},\"ierrors\":{},\"rx_nombuf\":{},\
                     \"pps\":{:.1},\"bps\":{:.1}}}",
                    q.packets,
                    q.bytes,
                    q.ierrors,
                    q.rx_nombuf,
                    rate(q.packets, lp.map(|q| q.packets)),
                    8.0 * rate(q.bytes, lp.map(|q| q.bytes))
                )
            })
            .collect();
        format!("[{}]", v.join(","))
    };
    format!(
        "{{\"port\":{id},\"name\":{},\"ipackets\":{},\"opackets\":{},\"ibytes\":{},\"obytes\":{},\
         \"imissed\":{},\"ierrors\":{},\"oerrors\":{},\"rx_nombuf\":{},\"ipps\":{:.1},\"opps\":{:.1},\
         \"ibps\":{:.1},\"obps\":{:.1},\"rx_queues\":{},\"tx_queues\":{}}}",
        json_escape(name),
        st.ipackets,
        st.opackets,
        st.ibytes,
        st.obytes,
        st.imissed,
        st.ierrors,
        st.oerrors,
        st.rx_nombuf,
        rate(st.ipackets, prev.map(|s| s.ipackets)),
        rate(st.opackets, prev.map(|s| s.opackets)),
        8.0 * rate(st.ibytes, prev.map(|s| s.ibytes)),
        8.0 * rate(st.obytes, prev.map(|s| s.obytes)),
        queues(&st.rx_queues, prev.map(|s| &s.rx_queues)),
        queues(&st.tx_queues, prev.map(|s| &s.tx_queues))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn capture_global_header_bytes_are_exact() {
        let h = global_header(65535);
        assert_eq!(
            h,
            [
                0x4d, 0x3c, 0xb2, 0xa1, // magic (ns), little-endian
                2, 0, 4, 0, // version 2.4
                0, 0, 0, 0, // thiszone
                0, 0, 0, 0, // sigfigs
                0xff, 0xff, 0, 0, // snaplen 65535
                1, 0, 0, 0, // LINKTYPE_ETHERNET
            ]
        );
    }

    #[test]
    fn capture_record_header_bytes_are_exact() {
        let h = record_header(3_000_000_007, 60, 1514);
        assert_eq!(h, [3, 0, 0, 0, 7, 0, 0, 0, 60, 0, 0, 0, 0xea, 0x05, 0, 0]);
        let mut w = PcapWriter::new(Vec::new(), 64).unwrap();
        w.write_record(5, 100, &[0xAB; 100]).unwrap();
        let v = w.into_inner();
        assert_eq!(v.len(), 24 + 16 + 64, "cut to the snap length");
        assert_eq!(&v[24 + 8..24 + 16], &[64, 0, 0, 0, 100, 0, 0, 0]);
    }

    #[test]
    fn capture_reader_accepts_big_endian_microseconds() {
        let mut b = Vec::new();
        b.extend_from_slice(&PCAP_MAGIC_US.to_be_bytes());
        b.extend_from_slice(&[0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 1]);
        b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 3, 0, 0, 0, 3, 9, 8, 7]);
        let (h, r) = read_pcap(&b).unwrap();
        assert!(!h.nanos);
        assert_eq!((h.version, h.snaplen, h.linktype), ((2, 4), 65535, 1));
        assert_eq!(
            r,
            vec![PcapRecord {
                ts_ns: 2_000_005_000,
                orig_len: 3,
                data: vec![9, 8, 7]
            }]
        );
        assert!(matches!(
            read_pcap(&b[..b.len() - 1]),
            Err(PcapParseError::Record { .. })
        ));
        assert_eq!(read_pcap(&[0; 24]), Err(PcapParseError::Magic(0)));
    }

    /// A writer that blocks on its first flush until released.
    struct Gate {
        rx: Option<mpsc::Receiver<()>>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.out.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            if let Some(rx) = self.rx.take() {
                let _ = rx.recv();
            }
            Ok(())
        }
    }

    #[test]
    fn capture_ring_full_drops_are_counted() {
        let (tx, rx) = mpsc::channel();
        let out = Arc::new(Mutex::new(Vec::new()));
        let gate = Gate {
            rx: Some(rx),
            out: out.clone(),
        };
        let cfg = CaptureConfig {
            slots: 4,
            record_len: 128,
        };
        let cap = Capture::with_writer(gate, &cfg, Path::new("<gate>")).unwrap();
        let mut tap = cap.tap();
        // The writer is stuck flushing the header: 4 records fit, 6 frames are dropped.
        let oks: Vec<bool> = (0..10u8).map(|i| tap.capture(&[i; 60], u64::from(i))).collect();
        assert_eq!(
            oks,
            [true, true, true, true, false, false, false, false, false, false]
        );
        assert_eq!((tap.captured(), tap.dropped()), (4, 6));
        tap.publish();
        assert_eq!(cap.counts(), (4, 6));
        tx.send(()).unwrap();
        drop(tap);
        let rep = cap.finish().unwrap();
        assert_eq!(
            rep,
            CaptureReport {
                captured: 4,
                dropped: 6,
                written: 4
            }
        );
        let (_, recs) = read_pcap(&out.lock().unwrap()).unwrap();
        let firsts: Vec<u8> = recs.iter().map(|r| r.data[0]).collect();
        assert_eq!(firsts, [0, 1, 2, 3]);
    }

    #[test]
    fn capture_round_trip_through_a_file() {
        let path = std::env::temp_dir().join(format!("oxpmd-capture-{}.pcap", std::process::id()));
        let cfg = CaptureConfig {
            slots: 64,
            record_len: 1000,
        };
        let cap = Capture::start(&path, &cfg).unwrap();
        let mut tap = cap.tap();
        let frame = |i: usize| -> Vec<u8> { (0..60 + i * 7).map(|j| (i * 13 + j) as u8).collect() };
        let n = 300usize;
        let mut sent = Vec::new();
        for i in 0..n {
            let f = frame(i);
            // Retry while the writer catches up (the tap itself never waits).
            while !tap.capture(&f, 1_700_000_000_000_000_000 + i as u64) {
                std::thread::yield_now();
            }
            sent.push(f);
        }
        drop(tap);
        let rep = cap.finish().unwrap();
        assert_eq!((rep.captured, rep.written), (n as u64, n as u64));
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let (h, recs) = read_pcap(&bytes).unwrap();
        assert_eq!(
            h,
            PcapHeader {
                nanos: true,
                version: (2, 4),
                snaplen: 65535,
                linktype: 1
            }
        );
        assert_eq!(recs.len(), n);
        for (i, (r, f)) in recs.iter().zip(&sent).enumerate() {
            assert_eq!(r.orig_len as usize, f.len(), "record {i}");
            assert_eq!(r.data[..], f[..f.len().min(1000)], "record {i}");
            assert_eq!(r.ts_ns, 1_700_000_000_000_000_000 + i as u64);
        }
        assert!(sent.iter().any(|f| f.len() > 1000), "some frames were cut");
    }

    #[test]
    fn capture_bad_config_is_refused() {
        for (slots, record_len) in [(3, 64), (0, 64), (1 << 17, 64), (4, 0), (4, 70000)] {
            let cfg = CaptureConfig { slots, record_len };
            assert!(matches!(
                Capture::with_writer(Vec::new(), &cfg, Path::new("x")),
                Err(CaptureError::Config(_))
            ));
        }
    }

    #[test]
    fn capture_port_stats_json_fields_and_rates() {
        let prev = PortStats {
            ipackets: 100,
            ibytes: 6400,
            rx_queues: vec![QueueCounters {
                packets: 100,
                bytes: 6400,
                ..Default::default()
            }],
            ..Default::default()
        };
        let now = PortStats {
            ipackets: 300,
            ibytes: 19200,
            opackets: 7,
            imissed: 2,
            rx_nombuf: 1,
            rx_queues: vec![QueueCounters {
                packets: 300,
                bytes: 19200,
                ..Default::default()
            }],
            ..Default::default()
        };
        let j = port_stats_json(3, "ring:\"x\"", &now, Some(&prev), 2.0);
        assert!(
            j.starts_with("{\"port\":3,\"name\":\"ring:\\\"x\\\"\",\"ipackets\":300,"),
            "{j}"
        );
        for f in [
            "\"opackets\":7,",
            "\"imissed\":2,",
            "\"rx_nombuf\":1,",
            "\"ipps\":100.0,",
            "\"ibps\":51200.0,",
            "\"rx_queues\":[{\"queue\":0,\"packets\":300,\"bytes\":19200,",
            "\"tx_queues\":[]}",
        ] {
            assert!(j.contains(f), "{f} not in {j}");
        }
        assert_eq!(j.matches('{').count(), j.matches('}').count());
    }

    #[test]
    fn capture_json_escape() {
        assert_eq!(json_escape("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
        assert_eq!(json_escape(""), "\"\"");
    }
}
