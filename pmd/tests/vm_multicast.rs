//! vm-topology: pair
//!
//! The multicast address list of our igb port (OXPMD_PORT0) against multicast datagrams the
//! guest kernel sends from the igb port at the other end of the link (OXPMD_PORT1): groups not in
//! the list never arrive, a group in it does, the others stay out, an emptied list lets none
//! through, and all-multicast mode lets every group in. Run with `cargo xtask vm test vm_multicast`.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use oxpmd_pmd::{MacAddr, RxQueue};

mod vm_kernel_peer;
use vm_kernel_peer::*;

const PORT: u16 = 7100;
const N: usize = 10;
/// How long a group the filter must drop is waited for.
const QUIET: Duration = Duration::from_secs(2);
const IN_LIST: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
const NOT_IN_LIST: Ipv4Addr = Ipv4Addr::new(239, 9, 9, 9);

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

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn igb_multicast_list_against_the_kernels_multicast_datagrams() {
    let (ours, peer) = (env("OXPMD_PORT0"), env("OXPMD_PORT1"));
    assert_eq!(env("OXPMD_PORT0_MODEL"), "igb");
    let (mut port, _pool, mut rx0, _tx) = open_started(&ours, "vm_multicast", |c| c);
    let rx = &mut rx0;

    let iface = kernel_igb(&peer, &[]);
    // No IPv6: no MLD report of the kernel's own to a group of ours.
    std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"), "1").unwrap();
    run("ip", &["addr", "add", "10.79.0.1/24", "dev", &iface]);
    run("ip", &["link", "set", "dev", &iface, "up"]);
    run("ip", &["route", "add", "224.0.0.0/4", "dev", &iface]);
    wait_carrier(&iface);
    let sock = UdpSocket::bind("10.79.0.1:0").unwrap();
    sock.set_multicast_ttl_v4(1).unwrap();
    println!(
        "kernel {peer} is {iface}; groups {IN_LIST} ({}) and {NOT_IN_LIST} ({})",
        group_mac(IN_LIST),
        group_mac(NOT_IN_LIST)
    );

    // Empty list, all-multicast off: neither group.
    send(&sock, IN_LIST);
    send(&sock, NOT_IN_LIST);
    let got = receive(rx, None, QUIET);
    assert!(got.is_empty(), "no group is in the list yet: {got:?}");
    // One group in the list: that one, all of it, and not the other.
    port.set_mc_addr_list(&[group_mac(IN_LIST)]).unwrap();
    send(&sock, IN_LIST);
    send(&sock, NOT_IN_LIST);
    let got = receive(rx, Some(N), QUIET.max(Duration::from_secs(10)));
    let got = [got, receive(rx, None, QUIET)].concat();
    assert_eq!(
        (count(&got, IN_LIST), count(&got, NOT_IN_LIST)),
        (N, 0),
        "{got:?}"
    );
    // Emptied: none again.
    port.set_mc_addr_list(&[]).unwrap();
    send(&sock, IN_LIST);
    let got = receive(rx, None, QUIET);
    assert!(got.is_empty(), "the list was emptied: {got:?}");
    // All-multicast mode: every group, list or not.
    port.set_all_multicast(true).unwrap();
    send(&sock, IN_LIST);
    send(&sock, NOT_IN_LIST);
    let got = receive(rx, Some(2 * N), Duration::from_secs(10));
    assert_eq!(
        (count(&got, IN_LIST), count(&got, NOT_IN_LIST)),
        (N, N),
        "{got:?}"
    );
    println!("multicast: none, then {IN_LIST} only, then none, then both with all-multicast");

    drop((rx0, _tx));
    port.stop().unwrap();
    drop(port);
    release(&peer);
}
