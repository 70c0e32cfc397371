//! The `xdp:` port against the kernel's veth driver: a veth pair is made, the port opens one end
//! and an AF_PACKET socket on the other end is the peer (the kernel's own packet path, not ours).
//! Used by `xdp_veth` (on the host, when it may create interfaces) and `vm_xdp_veth` (in the test
//! VM).
#![allow(dead_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxpmd_dma::{IdentityMap, Mempool, MempoolConfig, PageSize, RegionOptions};
use oxpmd_pmd::{Burst, Port, PortConfig};

/// Ethertype of the test frames (IEEE local experimental), so other traffic is told apart.
pub const ETHERTYPE: u16 = 0x88b5;

/// A veth pair, deleted on drop.
pub struct Veth {
    pub a: String,
    pub b: String,
}

impl Veth {
    /// Creates `oxNa`/`oxNb` and sets both up; `None` (with the reason printed) when this
    /// environment cannot.
    pub fn create(tag: &str) -> Option<Veth> {
        let n = std::process::id() % 100_000;
        let (a, b) = (format!("ox{tag}{n}a"), format!("ox{tag}{n}b"));
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .output()
                .map(|o| {
                    if !o.status.success() {
                        eprintln!(
                            "ip {}: {}",
                            args.join(" "),
                            String::from_utf8_lossy(&o.stderr).trim()
                        );
                    }
                    o.status.success()
                })
                .unwrap_or(false)
        };
        if !ok(&["link", "add", &a, "type", "veth", "peer", "name", &b]) {
            return None;
        }
        let v = Veth { a, b };
        for i in [&v.a, &v.b] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
            if !ok(&["link", "set", "dev", i, "up"]) {
                return None;
            }
        }
        Some(v)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.a]).output();
    }
}

/// A chunk-aligned pool (2048-byte buffers), 2 MiB pages if reserved, else 4 KiB.
pub fn umem_pool(name: &str, n: usize) -> Mempool {
    let cfg = MempoolConfig {
        cache_size: 32,
        headroom: 128,
        data_room: 1920,
        chunk_aligned: true,
        region: RegionOptions {
            page_size: PageSize::Huge2M,
            allow_4k_fallback: true,
        },
        ..MempoolConfig::new(name, n)
    };
    Mempool::new(&cfg, Arc::new(IdentityMap)).expect("UMEM pool")
}

/// An AF_PACKET socket bound to `iface`, receiving [`ETHERTYPE`] frames.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    pub fn open(iface: &str) -> PacketSocket {
        let proto = ETHERTYPE.to_be() as i32;
        // SAFETY: plain socket(2); owned at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
        // SAFETY: ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(iface).unwrap();
        // SAFETY: NUL-terminated.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETHERTYPE.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: a valid sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: a timeval of the size passed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        PacketSocket { fd, ifindex }
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: a live buffer of the length passed.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            r,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// One frame, or `None` after 200 ms.
    pub fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        // SAFETY: room for buf.len() bytes.
        let r = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if r < 0 {
            return None;
        }
        buf.truncate(r as usize);
        Some(buf)
    }
}

/// Test frame `seq` of `len` bytes: broadcast, [`ETHERTYPE`], the sequence number, a pattern.
pub fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(31).wrapping_add(seq) as u8;
    }
    f
}

fn is_test_frame(d: &[u8]) -> bool {
    d.len() >= 18 && d[12..14] == ETHERTYPE.to_be_bytes()
}

/// Opens and starts `xdp:IFACE` (one queue) with `pool`.
pub fn start_port(spec: &str, pool: &Mempool) -> Port {
    let mut port = Port::open(spec, 0).unwrap_or_else(|e| panic!("open {spec}: {e}"));
    port.configure(&PortConfig::new(pool.clone()).queues(1, 1).ring_sizes(256, 256))
        .unwrap_or_else(|e| panic!("configure {spec}: {e}"));
    port.start().unwrap_or_else(|e| panic!("start {spec}: {e}"));
    port
}

/// The whole check on a fresh veth pair: peer → port (byte-exact, none lost), port → peer
/// from the UMEM pool and from another pool, then everything back in its pool. Returns false
/// (skipped) when the environment cannot make a veth pair.
pub fn veth_round_trip(mode: &str) -> bool {
    let Some(veth) = Veth::create("x") else {
        return false;
    };
    let pool = umem_pool("xdp-veth", 1024);
    let other = oxpmd_pmd::vport::virtual_pool("xdp-other", 256, 0).unwrap();
    let spec = format!("xdp:{}{mode}", veth.a);
    let mut port = start_port(&spec, &pool);
    eprintln!("{spec}: driver {}", port.info().driver);
    let (mut rxqs, mut txqs) = port.take_queues().unwrap();
    let (rxq, txq) = (&mut rxqs[0], &mut txqs[0]);
    let peer = PacketSocket::open(&veth.b);

    // Peer → port: every frame, byte for byte, in order.
    const N: u32 = 2000;
    let mut burst = Burst::new();
    let mut next = 0u32;
    let deadline = Instant::now() + Duration::from_secs(30);
    for seq in 0..N {
        let len = 60 + (seq as usize * 7) % 1455;
        peer.send(&frame(seq, len));
        // A moderate rate: keep the socket's 256-entry RX ring from filling up.
        if seq % 64 == 63 {
            while next + 64 <= seq + 1 && Instant::now() < deadline {
                rxq.rx_burst(&mut burst);
                for p in burst.drain() {
                    if !is_test_frame(p.data()) {
                        continue;
                    }
                    let want = frame(next, 60 + (next as usize * 7) % 1455);
                    assert_eq!(p.data(), &want[..], "frame {next} differs");
                    assert!(pool.owns(&p), "received into the UMEM pool, no copy");
                    next += 1;
                }
            }
        }
    }
    while next < N && Instant::now() < deadline {
        rxq.rx_burst(&mut burst);
        for p in burst.drain() {
            if is_test_frame(p.data()) {
                let want = frame(next, 60 + (next as usize * 7) % 1455);
                assert_eq!(p.data(), &want[..], "frame {next} differs");
                next += 1;
            }
        }
    }
    assert_eq!(next, N, "peer → {spec}: {next} of {N} frames arrived");

    // Port → peer: UMEM packets (sent from their own buffers) and packets of another pool
    // (copied), interleaved.
    let mut got = 0u32;
    for seq in 0..200u32 {
        let len = 60 + (seq as usize * 13) % 1455;
        let src = if seq % 2 == 0 { &pool } else { &other };
        let mut p = src.alloc().expect("a buffer");
        p.extend_from_slice(&frame(seq, len)).unwrap();
        burst.push(p).unwrap();
        while !burst.is_empty() {
            txq.tx_burst(&mut burst);
        }
        let d = loop {
            let d = peer
                .recv()
                .unwrap_or_else(|| panic!("{spec} → peer: frame {seq} did not arrive"));
            if is_test_frame(&d) {
                break d;
            }
        };
        assert_eq!(d, frame(seq, len), "frame {seq} differs at the peer");
        got += 1;
        txq.reclaim();
    }
    assert_eq!(got, 200);
    let stats = port.stats().unwrap();
    eprintln!("{spec}: {stats:?}");
    assert!(stats.ipackets >= u64::from(N) && stats.opackets == 200);

    drop((rxqs, txqs));
    drop(port);
    oxpmd_dma::flush_thread_caches();
    assert_eq!(
        pool.available(),
        pool.capacity(),
        "every UMEM buffer back in its pool"
    );
    assert_eq!(other.available(), other.capacity());
    drop(veth);
    true
}
