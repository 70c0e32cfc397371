//! vm-topology: virtio
//!
//! The multicast address list of our ports against multicast datagrams the guest kernel sends from
//! the igb port at the other end of the link: groups not in the list never arrive, a group in it
//! does, the others stay out, a changed list lets in its new group only, an emptied list none,
//! and all-multicast mode every group. Our igb port 0 (kernel: igb port 1) filters with its
//! multicast table; our virtio-net port 3 (kernel: igb port 2) with the device's MAC table
//! (VIRTIO_NET_CTRL_MAC_TABLE_SET). Run with `cargo xtask vm test vm_multicast`.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use oxpmd_pmd::{Capabilities, MacAddr, Port, PortError, RxQueue};

mod vm_kernel_peer;
use vm_kernel_peer::*;

const PORT: u16 = 7100;
const N: usize = 10;
/// How long a group the filter must drop is waited for.
const QUIET: Duration = Duration::from_secs(2);
const IN_LIST: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
const NOT_IN_LIST: Ipv4Addr = Ipv4Addr::new(239, 9, 9, 9);
/// A third group, for a list that changes.
const LATER: Ipv4Addr = Ipv4Addr::new(239, 5, 6, 7);

/// The Ethernet group address of an IPv4 multicast group (RFC 1112: 01:00:5e + the low 23 bits).
fn group_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
}

/// Datagrams to each group, by destination MAC, received within `wait` (until `want` in all).
fn receive(rx: &mut RxQueue, want: Option<usize>, wait: Duration) -> Vec<MacAddr> {
    receive_matching(rx, want, wait, |p| {
        let d = p.data();
        // IPv4 UDP to PORT.
        (d.len() >= 42 && d[12..14] == [0x08, 0x00] && d[23] == 17 && d[36..38] == PORT.to_be_bytes())
            .then(|| MacAddr(d[0..6].try_into().unwrap()))
    })
}

fn send(sock: &UdpSocket, group: Ipv4Addr) {
    for i in 0..N {
        sock.send_to(format!("group {group} #{i}").as_bytes(), (group, PORT))
            .unwrap();
    }
}

fn count(got: &[MacAddr], group: Ipv4Addr) -> usize {
    got.iter().filter(|m| **m == group_mac(group)).count()
}

/// The kernel's side: `peer` on the kernel igb driver, with `addr`/24, no IPv6 (no MLD report of
/// the kernel's own to a group of ours), multicast routed out of it; a socket sending from it.
fn kernel_sender(peer: &str, addr: &str) -> UdpSocket {
    let iface = kernel_igb(peer, &[]);
    std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"), "1").unwrap();
    run("ip", &["addr", "add", &format!("{addr}/24"), "dev", &iface]);
    run("ip", &["link", "set", "dev", &iface, "up"]);
    run("ip", &["route", "add", "224.0.0.0/4", "dev", &iface]);
    wait_carrier(&iface);
    let sock = UdpSocket::bind((addr, 0)).unwrap();
    sock.set_multicast_ttl_v4(1).unwrap();
    println!(
        "kernel {peer} is {iface}; groups {IN_LIST} ({}), {NOT_IN_LIST} ({}), {LATER} ({})",
        group_mac(IN_LIST),
        group_mac(NOT_IN_LIST),
        group_mac(LATER)
    );
    sock
}

/// Sends `N` datagrams to each of `groups` and returns how many of each arrived: waits for
/// `expected` in all (or [`QUIET`] when none is expected), then [`QUIET`] more for any other.
fn round(rx: &mut RxQueue, sock: &UdpSocket, groups: &[Ipv4Addr], expected: usize) -> Vec<usize> {
    for g in groups {
        send(sock, *g);
    }
    let got = if expected == 0 {
        receive(rx, None, QUIET)
    } else {
        let first = receive(rx, Some(expected), Duration::from_secs(10));
        [first, receive(rx, None, QUIET)].concat()
    };
    groups.iter().map(|g| count(&got, *g)).collect()
}

/// The list and all-multicast mode on a started port, promiscuous off: empty, one group, the
/// group changed, emptied, all-multicast.
fn check_list(port: &mut Port, rx: &mut RxQueue, sock: &UdpSocket) {
    assert!(!port.promiscuous() && !port.all_multicast());
    let all = [IN_LIST, NOT_IN_LIST, LATER];
    assert_eq!(round(rx, sock, &all, 0), [0, 0, 0], "empty list: no group");
    port.set_mc_addr_list(&[group_mac(IN_LIST)]).unwrap();
    assert_eq!(round(rx, sock, &all, N), [N, 0, 0], "{IN_LIST} listed");
    port.set_mc_addr_list(&[group_mac(LATER)]).unwrap();
    assert_eq!(round(rx, sock, &all, N), [0, 0, N], "the list changed to {LATER}");
    port.set_mc_addr_list(&[]).unwrap();
    assert_eq!(round(rx, sock, &all, 0), [0, 0, 0], "the list emptied");
    port.set_all_multicast(true).unwrap();
    assert_eq!(round(rx, sock, &all, 3 * N), [N, N, N], "all-multicast mode");
    port.set_all_multicast(false).unwrap();
    assert_eq!(
        round(rx, sock, &all, 0),
        [0, 0, 0],
        "all-multicast off, list empty"
    );
    println!("multicast: none, {IN_LIST} only, {LATER} only, none, all with all-multicast, none");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn igb_multicast_list_against_the_kernels_multicast_datagrams() {
    let (ours, peer) = (env("OXPMD_PORT0"), env("OXPMD_PORT1"));
    assert_eq!(env("OXPMD_PORT0_MODEL"), "igb");
    let (mut port, _pool, mut rx, _tx) = open_started(&ours, "vm_multicast", |c| c);
    let sock = kernel_sender(&peer, "10.79.0.1");
    check_list(&mut port, &mut rx, &sock);
    drop((rx, _tx));
    port.stop().unwrap();
    drop(port);
    release(&peer);
}

/// The same against our virtio-net port, then what is virtio's own: a list set before start is
/// in the device's table once started (the driver sends it after DRIVER_OK, as after every
/// reset), and more groups than the device's table holds are refused, the list in place kept.
#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn virtio_multicast_list_against_the_kernels_multicast_datagrams() {
    let (ours, peer) = (env("OXPMD_PORT3"), env("OXPMD_PORT2"));
    assert_eq!(env("OXPMD_PORT3_MODEL"), "virtio-net");
    assert_eq!(env("OXPMD_PORT2_MODEL"), "igb");
    let (mut port, pool, mut rx, tx) = open_started(&ours, "vm_multicast_virtio", |c| c);
    assert!(
        port.info().capabilities.contains(Capabilities::MULTICAST_LIST),
        "{}",
        port.info().capabilities
    );
    let sock = kernel_sender(&peer, "10.79.1.1");
    check_list(&mut port, &mut rx, &sock);
    drop((rx, tx));
    port.stop().unwrap();
    drop((port, pool));

    let (mut port, pool, mut rx, tx) = open_configured(&ours, "vm_multicast_virtio_early", |c| c);
    port.set_mc_addr_list(&[group_mac(NOT_IN_LIST)]).unwrap();
    port.start().unwrap();
    port.wait_link_up(Duration::from_secs(30)).unwrap();
    let all = [IN_LIST, NOT_IN_LIST, LATER];
    assert_eq!(
        round(&mut rx, &sock, &all, N),
        [0, N, 0],
        "{NOT_IN_LIST}, listed before start"
    );
    let many: Vec<MacAddr> = (0..65u8)
        .map(|i| MacAddr([0x01, 0x00, 0x5e, 0x7f, 0x00, i]))
        .collect();
    match port.set_mc_addr_list(&many) {
        Err(e @ PortError::InvalidConfig { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("64") && msg.contains("all-multicast"), "{msg}");
            println!("65 groups refused: {msg}");
        }
        other => panic!("65 groups: {other:?}"),
    }
    assert_eq!(
        round(&mut rx, &sock, &all, N),
        [0, N, 0],
        "the refused list changed nothing"
    );
    port.set_mc_addr_list(&many[..64]).unwrap();
    assert_eq!(
        round(&mut rx, &sock, &all, 0),
        [0, 0, 0],
        "64 other groups listed: none of these"
    );
    println!("virtio: a list set before start is in effect; 65 groups refused, 64 taken");
    drop((rx, tx));
    port.stop().unwrap();
    drop((port, pool));
    release(&peer);
}
