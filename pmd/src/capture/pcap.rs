//! The classic pcap format: the global and record headers a [`super::Capture`] writes
//! ([`PcapWriter`]), the wall clock of its timestamps, and [`read_pcap`], which parses a file
//! (both magics, both byte orders) for tests and tools.

use std::io::{self, Write};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
