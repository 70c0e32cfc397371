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

mod json;
mod pcap;

pub use json::{json_escape, port_stats_json};
pub use pcap::{
    DEFAULT_SNAPLEN, GLOBAL_HEADER_LEN, LINKTYPE_ETHERNET, PCAP_MAGIC_NS, PCAP_MAGIC_US, PcapHeader,
    PcapParseError, PcapRecord, PcapWriter, RECORD_HEADER_LEN, global_header, now_ns, read_pcap,
    record_header,
};

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use oxpmd_dma::{Ring, RingError};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

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
}
