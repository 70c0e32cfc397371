//! vm-topology: virtio
//!
//! VLAN offloads against the guest kernel on the other end of the link (kernel igb with 802.1Q
//! interfaces for VLANs 100 and 200): RX stripping (the TCI in the packet, the frame untagged),
//! the RX filter table (a VLAN not in it never arrives; added, it does; removed, it stops), TX
//! insertion (the kernel's VLAN interface delivers our datagrams to a socket bound on it), and
//! with stripping off the tag stays in the frame. Our igb port 0 (peer: port 1) does it in
//! hardware; our virtio-net port 3 (peer: igb port 2) strips and inserts in software and filters
//! through the device's VLAN table (VIRTIO_NET_F_CTRL_VLAN, negotiated only for a port configured
//! with the filter). Run with `cargo xtask vm test vm_vlan`.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use oxpmd_dma::{Mempool, MempoolConfig, OffloadFlags};
use oxpmd_pmd::drivers::virtio::VirtioDriver;
use oxpmd_pmd::drivers::virtio::regs::feature;
use oxpmd_pmd::{Burst, Capabilities, Driver, MacAddr, OpenOptions, Port, PortConfig, RxQueue, TxQueue};
use oxpmd_vfio::PciAddress;

mod vm_kernel_peer;
use vm_kernel_peer::*;

/// How long a frame the filter must drop is waited for.
const QUIET: Duration = Duration::from_secs(2);
const OUR_PORT: u16 = 7000;
const PEER_PORT: u16 = 5200;
const N: usize = 20;

fn our_ip(vid: u16) -> [u8; 4] {
    [10, 78, (vid % 256) as u8, 2]
}

fn peer_ip(vid: u16) -> String {
    format!("10.78.{}.1", vid % 256)
}

/// An untagged UDP/IPv4 datagram from us to the peer on VLAN `vid`'s subnet.
fn udp_to_peer(dst: MacAddr, src: MacAddr, vid: u16, seq: u16) -> Vec<u8> {
    let peer: std::net::Ipv4Addr = peer_ip(vid).parse().unwrap();
    udp_ipv4_frame(
        dst.0,
        src.0,
        our_ip(vid),
        peer.octets(),
        OUR_PORT,
        PEER_PORT,
        seq,
        format!("oxpmd vlan {vid} #{seq}").as_bytes(),
    )
}

/// The kernel side: one 802.1Q interface per VLAN on the kernel's igb port, our address as a
/// permanent neighbour (no ARP needed either way).
struct Peer {
    iface: String,
}

impl Peer {
    fn vlan_iface(&self, vid: u16) -> String {
        format!("vl{vid}")
    }

    /// `n` datagrams from the kernel's VLAN `vid` interface to our address on it.
    fn send(&self, vid: u16, n: usize) {
        let s = UdpSocket::bind((peer_ip(vid).as_str(), 0)).unwrap();
        let ip = our_ip(vid);
        for i in 0..n {
            s.send_to(
                format!("kernel vlan {vid} #{i}").as_bytes(),
                (std::net::Ipv4Addr::from(ip), OUR_PORT),
            )
            .unwrap();
        }
    }
}

/// Frames to our UDP port received within `wait` (until `want` of them, if given).
fn receive(rx: &mut RxQueue, want: Option<usize>, wait: Duration) -> Vec<(Vec<u8>, OffloadFlags, u16)> {
    receive_matching(rx, want, wait, |p| {
        let d = p.data();
        // UDP to OUR_PORT, tagged or not.
        let l3 = if d.len() > 14 && d[12..14] == [0x81, 0x00] {
            18
        } else {
            14
        };
        (d.len() >= l3 + 24 && d[l3 + 9] == 17 && d[l3 + 22..l3 + 24] == OUR_PORT.to_be_bytes())
            .then(|| (d.to_vec(), p.flags(), p.vlan_tci()))
    })
}

fn open(addr: &str, strip: bool, filter: bool) -> (Port, Mempool, RxQueue, TxQueue) {
    open_started(addr, "vm_vlan", |c| c.vlan_strip(strip).vlan_filter(filter))
}

fn kernel_peer(peer_addr: &str, our_mac: MacAddr) -> Peer {
    let iface = kernel_igb(peer_addr, &["8021q"]);
    let peer = Peer { iface };
    run("ip", &["link", "set", "dev", &peer.iface, "up"]);
    for vid in [100u16, 200] {
        let v = peer.vlan_iface(vid);
        run(
            "ip",
            &[
                "link",
                "add",
                "link",
                &peer.iface,
                "name",
                &v,
                "type",
                "vlan",
                "id",
                &vid.to_string(),
            ],
        );
        run("ip", &["addr", "add", &format!("{}/24", peer_ip(vid)), "dev", &v]);
        run("ip", &["link", "set", "dev", &v, "up"]);
        let ip = our_ip(vid);
        run(
            "ip",
            &[
                "neigh",
                "replace",
                &format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]),
                "lladdr",
                &our_mac.to_string(),
                "dev",
                &v,
                "nud",
                "permanent",
            ],
        );
    }
    wait_carrier(&peer.iface);
    // A VLAN interface's carrier follows its link's, through the same deferred link-watch work.
    for vid in [100u16, 200] {
        wait_carrier(&peer.vlan_iface(vid));
    }
    peer
}

fn assert_stripped(got: &[(Vec<u8>, OffloadFlags, u16)], vid: u16) {
    for (d, flags, tci) in got {
        assert!(
            flags.contains(OffloadFlags::RX_VLAN_STRIPPED),
            "stripped: {flags:?}"
        );
        assert_eq!(tci & 0xFFF, vid, "the TCI of VLAN {vid}");
        assert_eq!(&d[12..14], &[0x08, 0x00], "the frame is untagged after stripping");
    }
}

/// Sends `N` untagged datagrams flagged `TX_VLAN_INSERT` with VLAN 200 (priority 5) and checks
/// that the kernel's vl200 delivers every one to a socket bound on its address.
fn check_insert(pool: &Mempool, tx: &mut TxQueue, peer_mac: MacAddr, our_mac: MacAddr) {
    let sock = UdpSocket::bind((peer_ip(200).as_str(), PEER_PORT)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut b = Burst::new();
    for i in 0..N {
        let mut p = pool.alloc().unwrap();
        p.extend_from_slice(&udp_to_peer(peer_mac, our_mac, 200, i as u16))
            .unwrap();
        p.set_vlan_tci(200 | (5 << 13));
        p.set_flags(OffloadFlags::TX_VLAN_INSERT);
        b.push(p).unwrap();
    }
    let t = Instant::now();
    while !b.is_empty() {
        tx.tx_burst(&mut b);
        assert!(t.elapsed() < DEADLINE, "TX ring never drained");
    }
    let mut delivered = 0;
    let mut buf = [0u8; 2048];
    let t = Instant::now();
    while delivered < N && t.elapsed() < DEADLINE {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            assert!(
                std::str::from_utf8(&buf[..n])
                    .unwrap()
                    .starts_with("oxpmd vlan 200 #")
            );
            assert_eq!(from.port(), OUR_PORT);
            delivered += 1;
        }
    }
    assert_eq!(
        delivered, N,
        "the kernel's VLAN 200 interface delivered every tagged datagram"
    );
    println!("insert: {delivered}/{N} datagrams tagged by us reached the kernel's vl200 socket");
}

/// With stripping off (and no filter) the tag stays in the frame and nothing says stripped.
fn check_strip_off(ours: &str, peer: &Peer) {
    let (mut port, _pool, mut rx, tx) = open(ours, false, false);
    peer.send(100, N);
    let got = receive(&mut rx, Some(N), DEADLINE);
    assert_eq!(got.len(), N, "VLAN 100 arrives without a filter");
    for (d, flags, _) in &got {
        assert!(!flags.contains(OffloadFlags::RX_VLAN_STRIPPED), "{flags:?}");
        assert_eq!(&d[12..14], &[0x81, 0x00], "still tagged");
        assert_eq!(u16::from_be_bytes([d[14], d[15]]) & 0xFFF, 100);
    }
    println!("strip off: {} frames arrived tagged with VLAN 100", got.len());
    let e = port.vlan_filter_add(100).unwrap_err().to_string();
    assert!(e.contains("vlan_filter(true)"), "{e}");
    drop((rx, tx));
    port.stop().unwrap();
}

/// Sends `N` datagrams on VLAN `vid` and checks that all arrive, stripped.
fn expect_arrives(rx: &mut RxQueue, peer: &Peer, vid: u16, what: &str) {
    peer.send(vid, N);
    let got = receive(rx, Some(N), DEADLINE);
    assert_eq!(got.len(), N, "VLAN {vid} {what}: arrives");
    assert_stripped(&got, vid);
}

/// Sends `N` datagrams on VLAN `vid` and checks that none arrives within [`QUIET`].
fn expect_dropped(rx: &mut RxQueue, peer: &Peer, vid: u16, what: &str) {
    peer.send(vid, N);
    let got = receive(rx, None, QUIET);
    assert!(
        got.is_empty(),
        "VLAN {vid} {what}: dropped, but {} arrived",
        got.len()
    );
}

/// With VLAN 100 (only) in the table: VLAN 100 arrives and 200 does not; 200 added, it arrives;
/// 100 removed, it does not.
fn check_filter(port: &mut Port, rx: &mut RxQueue, peer: &Peer) {
    expect_arrives(rx, peer, 100, "in the table");
    expect_dropped(rx, peer, 200, "not in the table");
    port.vlan_filter_add(200).unwrap();
    expect_arrives(rx, peer, 200, "once added");
    port.vlan_filter_remove(100).unwrap();
    expect_dropped(rx, peer, 100, "once removed");
    println!("filter: 100 in, 200 out, 200 in, 100 out: as programmed");
}

fn remove_peer(peer: &Peer, peer_addr: &str) {
    for vid in [100u16, 200] {
        run("ip", &["link", "del", &peer.vlan_iface(vid)]);
    }
    release(peer_addr);
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn igb_vlan_strip_filter_and_insert_against_kernel_vlan_interfaces() {
    let (ours, peer_addr) = (env("OXPMD_PORT0"), env("OXPMD_PORT1"));
    assert_eq!(env("OXPMD_PORT0_MODEL"), "igb");
    let peer_mac: MacAddr = env("OXPMD_PORT1_MAC").parse().unwrap();
    // Ours first: it takes port 0 for vfio-pci, so the kernel igb does not.
    let (mut port, pool, mut rx, mut tx) = open(&ours, true, true);
    let our_mac = port.mac_addr();
    let peer = kernel_peer(&peer_addr, our_mac);
    println!(
        "ours {ours} ({our_mac}); kernel {peer_addr} is {} ({peer_mac}) with vl100, vl200",
        peer.iface
    );

    // Filter on, table empty but for 100.
    port.vlan_filter_add(100).unwrap();
    check_filter(&mut port, &mut rx, &peer);
    check_insert(&pool, &mut tx, peer_mac, our_mac);
    drop((rx, tx));
    port.stop().unwrap();
    drop(port);
    check_strip_off(&ours, &peer);
    remove_peer(&peer, &peer_addr);
}

/// The virtio ports of the `virtio` topology: ours (port 3) and the kernel igb's (port 2).
fn virtio_ports() -> (String, String, MacAddr) {
    assert_eq!(env("OXPMD_PORT3_MODEL"), "virtio-net");
    assert_eq!(env("OXPMD_PORT2_MODEL"), "igb");
    (
        env("OXPMD_PORT3"),
        env("OXPMD_PORT2"),
        env("OXPMD_PORT2_MAC").parse().unwrap(),
    )
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn virtio_vlan_strip_and_insert_in_software_against_kernel_vlan_interfaces() {
    let (ours, peer_addr, peer_mac) = virtio_ports();
    // Without the filter CTRL_VLAN is not negotiated, and the device lets every VLAN through.
    let (port, pool, mut rx, mut tx) = open(&ours, true, false);
    let our_mac = port.mac_addr();
    let peer = kernel_peer(&peer_addr, our_mac);
    println!(
        "ours {ours} ({our_mac}, virtio-net); kernel {peer_addr} is {} ({peer_mac}) with vl100, vl200",
        peer.iface
    );
    for vid in [100u16, 200] {
        peer.send(vid, N);
        let got = receive(&mut rx, Some(N), DEADLINE);
        assert_eq!(got.len(), N, "VLAN {vid} arrives (no filter)");
        assert_stripped(&got, vid);
    }
    println!("strip (software): VLANs 100 and 200 arrived untagged with their TCI");
    check_insert(&pool, &mut tx, peer_mac, our_mac);
    drop((rx, tx));
    let mut port = port;
    port.stop().unwrap();
    drop(port);
    check_strip_off(&ours, &peer);
    remove_peer(&peer, &peer_addr);
}

/// The device's VLAN table through the control queue (VIRTIO_NET_CTRL_VLAN_ADD / _DEL): the
/// same sequence as igb's. A VLAN added between configure and start is in the table after start
/// (the driver sends the whole table after DRIVER_OK, as after every reset); promiscuous mode
/// lets every VLAN through (the device's rule, QEMU's `receive_filter`), off again it filters.
#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn virtio_vlan_filter_table_against_kernel_vlan_interfaces() {
    let (ours, peer_addr, peer_mac) = virtio_ports();
    // The renegotiation: CTRL_VLAN offered, not negotiated at open; configured with the filter,
    // the device is reset and takes it (FEATURES_OK read back).
    let mut drv = VirtioDriver::open(PciAddress::parse(&ours).unwrap(), &OpenOptions::default()).unwrap();
    let caps = drv.info().capabilities;
    assert!(
        caps.contains(Capabilities::VLAN_FILTER),
        "QEMU's virtio-net offers CTRL_VLAN: {caps}"
    );
    let at_open = drv.features();
    assert_eq!(at_open & feature::NET_CTRL_VLAN, 0, "{at_open:#x}");
    let pool = Mempool::new(
        &MempoolConfig::new("vm_vlan_negotiate", 1024),
        drv.dma_map().unwrap(),
    )
    .unwrap();
    drv.configure(&PortConfig::new(pool).ring_sizes(256, 256).vlan_filter(true))
        .unwrap();
    let f = drv.features();
    assert_eq!(f, at_open | feature::NET_CTRL_VLAN, "{f:#x}");
    assert_eq!(
        drv.device_status().unwrap() & 0x0B,
        0x0B,
        "ACKNOWLEDGE | DRIVER | FEATURES_OK"
    );
    println!("features {at_open:#x} at open, {f:#x} once configured with the VLAN filter");
    drop(drv);
    let (mut port, pool, mut rx, tx) =
        open_started(&ours, "vm_vlan_virtio", |c| c.vlan_strip(true).vlan_filter(true));
    let our_mac = port.mac_addr();
    let peer = kernel_peer(&peer_addr, our_mac);
    println!(
        "ours {ours} ({our_mac}, virtio-net, VLAN filter); kernel {peer_addr} is {} ({peer_mac})",
        peer.iface
    );
    // Configured with the filter, the table empty: no VLAN arrives.
    for vid in [100u16, 200] {
        expect_dropped(&mut rx, &peer, vid, "with an empty table");
    }
    port.vlan_filter_add(100).unwrap();
    check_filter(&mut port, &mut rx, &peer);
    // Promiscuous: every frame, the VLAN table bypassed by the device.
    port.set_promiscuous(true).unwrap();
    expect_arrives(&mut rx, &peer, 100, "(not in the table) in promiscuous mode");
    port.set_promiscuous(false).unwrap();
    expect_dropped(&mut rx, &peer, 100, "with promiscuous mode off again");
    println!("promiscuous: every VLAN; off: the table again");
    drop((rx, tx));
    port.stop().unwrap();
    drop((port, pool));

    // Added before start: in the table once started; the rest still dropped.
    let (mut port, pool, mut rx, tx) = open_configured(&ours, "vm_vlan_virtio_early", |c| {
        c.vlan_strip(true).vlan_filter(true)
    });
    port.vlan_filter_add(200).unwrap();
    let t = Instant::now();
    port.start().unwrap();
    println!(
        "start with the VLAN filter (4096 VLAN commands): {:?}",
        t.elapsed()
    );
    port.wait_link_up(Duration::from_secs(30)).unwrap();
    expect_arrives(&mut rx, &peer, 200, "added before start");
    expect_dropped(&mut rx, &peer, 100, "not added");
    println!("added before start: VLAN 200 in, 100 out");
    drop((rx, tx));
    port.stop().unwrap();
    drop((port, pool));
    remove_peer(&peer, &peer_addr);
}
