//! TCP segmentation offload against the guest kernel, shared by the `vm_tso*` binaries: one
//! 20 000-byte TCP payload per address family as a single chained packet flagged `TX_TCP_SEG`
//! (MSS 1448 over IPv4, 1428 over IPv6) from our port; a live tshark on the kernel's igb port
//! (GRO off) must see the segments: each at most the MSS, consecutive sequence numbers, valid
//! IPv4 header and TCP checksums, the payload byte-exact once put back together.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oxpmd_dma::{ChainBuilder, Mempool, OffloadFlags, Packet};
use oxpmd_pmd::checksum::Checksum;
use oxpmd_pmd::{Burst, Capabilities, MacAddr, TxQueue};

use crate::vm_kernel_peer::*;

pub const OUR_IP4: [u8; 4] = [10, 80, 0, 2];
pub const PEER_IP4: [u8; 4] = [10, 80, 0, 1];
pub const OUR_IP6: [u8; 16] = [0xfd, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const PEER_IP6: [u8; 16] = [0xfd, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const SPORT: u16 = 7200;
/// Source port of the probes sent until the capture sees one (it runs only some time after
/// tshark says so).
pub const PROBE_SPORT: u16 = 7201;
pub const DPORT: u16 = 5400;
pub const PAYLOAD: usize = 20_000;

/// The payload of the stream of family `v6`.
pub fn payload(v6: bool) -> Vec<u8> {
    (0..PAYLOAD)
        .map(|i| ((i * 11 + usize::from(v6) * 5) % 251) as u8)
        .collect()
}

/// Headers (Ethernet, IPv4 or IPv6, TCP with PSH|ACK) of the stream, the TCP checksum field
/// holding the pseudo-header sum without the length (what TSO devices expect), the IP lengths
/// those of the whole payload (the device rewrites them per segment).
pub fn headers(dst: MacAddr, src: MacAddr, v6: bool, seq: u32) -> Vec<u8> {
    headers_from(dst, src, v6, seq, SPORT, PAYLOAD)
}

/// The headers of a segment from `sport` with `payload` bytes after them (the IP lengths say so:
/// a bridge on the way, such as the host's in the `virtio-tap` topology, drops a frame whose IP
/// length is past its end).
pub fn headers_from(dst: MacAddr, src: MacAddr, v6: bool, seq: u32, sport: u16, payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    let mut pseudo = Checksum::new();
    if v6 {
        f.extend_from_slice(&0x86DDu16.to_be_bytes());
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&((20 + payload) as u16).to_be_bytes());
        ip.extend_from_slice(&[6, 64]);
        ip.extend_from_slice(&OUR_IP6);
        ip.extend_from_slice(&PEER_IP6);
        pseudo.add(&OUR_IP6);
        pseudo.add(&PEER_IP6);
        f.extend_from_slice(&ip);
    } else {
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0];
        ip[2..4].copy_from_slice(&((20 + 20 + payload) as u16).to_be_bytes());
        ip.extend_from_slice(&OUR_IP4);
        ip.extend_from_slice(&PEER_IP4);
        pseudo.add(&OUR_IP4);
        pseudo.add(&PEER_IP4);
        f.extend_from_slice(&ip);
    }
    pseudo.add(&[0, 6]);
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&DPORT.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&0u32.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, 0x18]);
    tcp.extend_from_slice(&0xFFFFu16.to_be_bytes());
    tcp.extend_from_slice(&pseudo.folded().to_be_bytes());
    tcp.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&tcp);
    f
}

/// The TSO packet: the headers in a segment of their own, the payload over 2000-byte segments.
pub fn tso_packet(pool: &Mempool, hdr: &[u8], payload: &[u8], mss: u16) -> Packet {
    let mut b = ChainBuilder::new();
    for part in std::iter::once(hdr).chain(payload.chunks(2000)) {
        let mut p = pool.alloc().expect("a buffer");
        p.extend_from_slice(part).unwrap();
        b.push(p).unwrap();
    }
    let mut p = b.take().unwrap();
    p.set_flags(OffloadFlags::TX_TCP_SEG | OffloadFlags::TX_TCP_CKSUM | OffloadFlags::TX_IP_CKSUM);
    p.set_tso_segsz(mss);
    p
}

/// A live tshark on the kernel's port, dissecting as it captures: one line per TCP frame of our
/// ports, checksums verified. One tshark per family (each start costs seconds under TCG, so the
/// capture is never re-read from a file in a loop).
pub struct LiveCapture {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl LiveCapture {
    /// Starts tshark on `iface`; returns once it says it captures.
    fn start(iface: &str, v6: bool) -> LiveCapture {
        let ip_status = if v6 { "ipv6.version" } else { "ip.checksum.status" };
        let mut child = Command::new("tshark")
            .args(["-i", iface, "-l", "-f"])
            .arg(format!("tcp src portrange {SPORT}-{PROBE_SPORT}"))
            .args([
                "-o",
                "tcp.check_checksum:TRUE",
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "tcp.analyze_sequence_numbers:FALSE",
                "-T",
                "fields",
                "-E",
                "separator=/t",
                "-e",
                "tcp.srcport",
                "-e",
                "frame.len",
                "-e",
                "tcp.len",
                "-e",
                "tcp.seq_raw",
                "-e",
                "tcp.checksum.status",
                "-e",
                ip_status,
                "-e",
                "tcp.payload",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tshark (cargo xtask vm setup installs it)");
        // tshark says "Capturing on 'IFACE'" once the capture runs.
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let t = Instant::now();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains("Capturing on") {
            assert!(
                t.elapsed() < DEADLINE,
                "tshark did not start: {}",
                String::from_utf8_lossy(&seen)
            );
            match std::io::Read::read(&mut err, &mut byte) {
                Ok(1) => seen.push(byte[0]),
                _ => panic!("tshark ended: {}", String::from_utf8_lossy(&seen)),
            }
        }
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut rest);
            if !rest.trim().is_empty() {
                eprintln!("tshark (capture): {}", rest.trim());
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LiveCapture { child, lines }
    }

    /// The next frame tshark dissected, as (source port, fields), within `wait`.
    fn next(&self, wait: Duration) -> Option<(u16, Vec<String>)> {
        let line = self.lines.recv_timeout(wait).ok()?;
        let mut f = line.split('\t').map(str::to_string);
        let sport = f.next()?.parse().ok()?;
        Some((sport, f.collect()))
    }

    /// Stops tshark (SIGINT lets it print what it still holds) and returns the frames it printed
    /// since the last [`LiveCapture::next`].
    fn stop(mut self) -> Vec<(u16, Vec<String>)> {
        run("kill", &["-INT", &self.child.id().to_string()]);
        let _ = self.child.wait();
        let mut rest = Vec::new();
        while let Some(frame) = self.next(Duration::from_secs(2)) {
            rest.push(frame);
        }
        rest
    }
}

/// One segment as tshark read it.
#[derive(Debug)]
pub struct Segment {
    frame_len: usize,
    tcp_len: usize,
    seq: u32,
    tcp_ok: bool,
    ip_ok: bool,
    payload: Vec<u8>,
}

impl Segment {
    /// A segment from tshark's fields (frame.len, tcp.len, tcp.seq_raw, tcp.checksum.status, the
    /// IP status field, tcp.payload).
    fn parse(f: &[String], v6: bool) -> Segment {
        assert_eq!(f.len(), 6, "tshark fields {f:?}");
        let hex = f[5].replace(':', "");
        Segment {
            frame_len: f[0].parse().unwrap(),
            tcp_len: f[1].parse().unwrap(),
            seq: f[2].parse().unwrap(),
            // Wireshark's checksum status: 1 = good (0 bad, 2 unverified).
            tcp_ok: f[3] == "1",
            ip_ok: if v6 { f[4] == "6" } else { f[4] == "1" },
            payload: (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect(),
        }
    }
}

/// Sends the TSO packet of one family and checks what tshark saw on the kernel's port.
pub fn check_family(
    tx: &mut TxQueue,
    pool: &Mempool,
    iface: &str,
    macs: (MacAddr, MacAddr),
    v6: bool,
    mss: u16,
) {
    let name = if v6 { "IPv6" } else { "IPv4" };
    let capture = LiveCapture::start(iface, v6);
    // Probes (plain frames, headers only) until the capture shows one.
    let t = Instant::now();
    'probing: loop {
        let mut p = pool.alloc().unwrap();
        p.extend_from_slice(&headers_from(macs.0, macs.1, v6, 0, PROBE_SPORT, 0))
            .unwrap();
        // A valid IPv4 header (a bridge on the way checks it); the TCP checksum is never looked at.
        p.set_flags(OffloadFlags::TX_IP_CKSUM);
        let mut b = Burst::new();
        b.push(p).unwrap();
        while !b.is_empty() {
            tx.tx_burst(&mut b);
        }
        while let Some((sport, _)) = capture.next(Duration::from_millis(300)) {
            if sport == PROBE_SPORT {
                break 'probing;
            }
        }
        assert!(t.elapsed() < DEADLINE, "{name}: the capture never saw a probe");
    }
    let seq0 = 0x1000_0000u32;
    let data = payload(v6);
    let mut b = Burst::new();
    b.push(tso_packet(pool, &headers(macs.0, macs.1, v6, seq0), &data, mss))
        .unwrap();
    let before = tx.counters();
    let t = Instant::now();
    while !b.is_empty() {
        tx.tx_burst(&mut b);
        assert!(t.elapsed() < DEADLINE, "TX ring never drained");
    }
    assert_eq!(
        tx.counters().packets,
        before.packets + 1,
        "{name}: the TSO packet was taken"
    );
    let want = PAYLOAD.div_ceil(usize::from(mss));
    // Until tshark has shown every segment (a hang guard, never a speed assertion); then what
    // it prints on stopping, so that a segment too many is seen too.
    let mut segs = Vec::new();
    let t = Instant::now();
    while segs.len() < want && t.elapsed() < DEADLINE {
        if let Some((sport, f)) = capture.next(Duration::from_millis(200))
            && sport == SPORT
        {
            segs.push(Segment::parse(&f, v6));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    for (sport, f) in capture.stop() {
        if sport == SPORT {
            segs.push(Segment::parse(&f, v6));
        }
    }
    if segs.len() != want {
        let _ = Command::new("ip").args(["-s", "link", "show", iface]).status();
        println!("our TX queue: {:?}", tx.counters());
    }
    assert_eq!(
        segs.len(),
        want,
        "{name}: {want} segments of at most {mss} bytes: {segs:?}"
    );
    let l3 = if v6 { 40 } else { 20 };
    let mut next = seq0;
    let mut joined = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let len = if i + 1 < want {
            usize::from(mss)
        } else {
            PAYLOAD - usize::from(mss) * (want - 1)
        };
        assert_eq!(s.tcp_len, len, "{name} segment {i}: TCP payload length");
        assert_eq!(
            s.frame_len,
            14 + l3 + 20 + len,
            "{name} segment {i}: frame length"
        );
        assert_eq!(s.seq, next, "{name} segment {i}: sequence number");
        assert!(s.tcp_ok, "{name} segment {i}: the TCP checksum is bad: {s:?}");
        assert!(s.ip_ok, "{name} segment {i}: the IP header is bad: {s:?}");
        next = next.wrapping_add(len as u32);
        joined.extend_from_slice(&s.payload);
    }
    assert_eq!(
        joined, data,
        "{name}: the payload, put back together, is byte-exact"
    );
    println!(
        "{name}: one {}-byte packet of {} segments, MSS {mss}: tshark saw {want} TCP segments, \
         checksums good, sequence numbers consecutive, payload byte-exact",
        14 + l3 + 20 + PAYLOAD,
        1 + PAYLOAD.div_ceil(2000)
    );
}

/// Both families' TSO packets from our port `ours` (opened and started) to the kernel's igb on
/// `peer_addr`, whose MAC is `peer_mac`.
pub fn tso_to_the_kernel(ours: OpenedPort, peer_addr: &str, peer_mac: MacAddr) {
    let (mut port, pool, rx, mut tx) = ours;
    assert!(port.info().capabilities.contains(Capabilities::TCP_TSO));
    let our_mac = port.mac_addr();
    let peer = KernelPort::bind(peer_addr);
    let iface = peer.iface.as_str();
    // GRO would merge the segments before the capture sees them.
    run("ethtool", &["-K", iface, "gro", "off"]);
    run("ip", &["link", "set", "dev", iface, "up"]);
    wait_carrier(iface);
    println!(
        "ours {} ({}, {our_mac}); kernel {peer_addr} is {iface} ({peer_mac}), GRO off",
        port.name(),
        port.info().driver
    );
    let tx = &mut tx;
    check_family(tx, &pool, iface, (peer_mac, our_mac), false, 1448);
    check_family(tx, &pool, iface, (peer_mac, our_mac), true, 1428);
    drop(rx);
    port.stop().unwrap();
}
