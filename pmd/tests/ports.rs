//! Port API over the virtual ports: configuration validation, null and ring ports, stats, no leaks.

use std::time::Duration;

use oxpmd_dma::Mempool;
use oxpmd_pmd::vport::virtual_pool;
use oxpmd_pmd::{Burst, MacAddr, Port, PortConfig, PortError};

fn pool(name: &str, n: usize) -> Mempool {
    virtual_pool(name, n, 64).expect("pool")
}

fn full(p: &Mempool) -> bool {
    oxpmd_dma::flush_thread_caches();
    p.available() == p.capacity()
}

#[test]
fn bad_configurations_are_errors_not_panics() {
    let p = pool("cfg", 4096);
    let cases: Vec<(PortConfig, &str)> = vec![
        (PortConfig::new(p.clone()).queues(0, 1), "RX queues"),
        (PortConfig::new(p.clone()).queues(1, 0), "TX queues"),
        (PortConfig::new(p.clone()).queues(17, 1), "RX queues"),
        (PortConfig::new(p.clone()).ring_sizes(1000, 1024), "ring size"),
        (PortConfig::new(p.clone()).ring_sizes(1024, 0), "ring size"),
        (PortConfig::new(p.clone()).ring_sizes(32, 1024), "ring size"),
        (PortConfig::new(p.clone()).ring_sizes(8192, 1024), "ring size"),
        (PortConfig::new(p.clone()).queues(8, 1), "mempool"),
    ];
    for (cfg, what) in cases {
        let mut port = Port::open("null0", 0).unwrap();
        let e = port.configure(&cfg).unwrap_err();
        assert!(e.to_string().contains(what), "{e}");
        assert!(e.to_string().contains("null0"), "error names the device: {e}");
    }
    // Ring ports have one queue each.
    let mut a = Port::open("ring:cfg", 0).unwrap();
    assert!(matches!(
        a.configure(&PortConfig::new(p.clone()).queues(2, 1)),
        Err(PortError::InvalidConfig { .. })
    ));
    // Wrong order of operations.
    let mut port = Port::open("null1", 0).unwrap();
    assert!(matches!(port.start(), Err(PortError::WrongState { .. })));
    assert!(matches!(port.take_queues(), Err(PortError::WrongState { .. })));
    port.configure(&PortConfig::new(p.clone())).unwrap();
    assert!(matches!(
        port.configure(&PortConfig::new(p.clone())),
        Err(PortError::WrongState { .. })
    ));
    port.take_queues().unwrap();
    assert!(matches!(port.take_queues(), Err(PortError::WrongState { .. })));
    // Bad MAC and bad device names.
    assert!(port.set_mac_addr(MacAddr([1, 0, 0, 0, 0, 1])).is_err());
    assert!(port.set_mac_addr(MacAddr::ZERO).is_err());
    for bad in ["", "eth0", "null", "ring:", "0000:00:02"] {
        assert!(
            matches!(Port::open(bad, 0), Err(PortError::BadDeviceSpec { .. })),
            "{bad}"
        );
    }
}

#[test]
fn null_port_produces_and_consumes_with_stats() {
    let p = pool("null", 4096);
    {
        let mut port = Port::open("null3,size=128", 5).unwrap();
        port.configure(&PortConfig::new(p.clone()).queues(2, 2)).unwrap();
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(1)).unwrap().up);
        port.set_promiscuous(true).unwrap();
        assert!(port.promiscuous());
        let mac = MacAddr([2, 0, 0, 0, 0, 0x33]);
        port.set_mac_addr(mac).unwrap();
        assert_eq!(port.mac_addr(), mac);
        let (mut rx, mut tx) = port.take_queues().unwrap();
        assert_eq!((rx.len(), tx.len()), (2, 2));
        let mut b = Burst::new();
        assert_eq!(rx[1].rx_burst(&mut b), 32);
        assert!(
            b.iter()
                .all(|x| x.len() == 128 && x.port() == 5 && x.queue() == 1)
        );
        assert_eq!(tx[0].tx_burst(&mut b), 32);
        assert!(b.is_empty());
        // Stats are published by the queue owners and read here.
        let st = port.stats().unwrap();
        assert_eq!(
            (st.ipackets, st.ibytes, st.opackets, st.obytes),
            (32, 32 * 128, 32, 32 * 128)
        );
        assert_eq!(st.rx_queues[1].packets, 32);
        assert_eq!(st.rx_queues[0].packets, 0);
        // Queues move to other threads.
        let h = std::thread::spawn(move || {
            let mut b = Burst::new();
            for _ in 0..100 {
                rx[0].rx_burst(&mut b);
                tx[1].tx_burst(&mut b);
            }
            (rx, tx)
        });
        let (rx, tx) = h.join().unwrap();
        let st = port.stats().unwrap();
        assert_eq!(st.ipackets, 32 + 3200);
        assert_eq!(st.tx_queues[1].packets, 3200);
        port.stop().unwrap();
        drop((rx, tx));
    }
    assert!(full(&p), "pool back to full after the port and queues are gone");
}

#[test]
fn null_port_counts_nombuf_when_the_pool_is_empty() {
    let p = pool("null-nombuf", 1100);
    let mut port = Port::open("null4", 0).unwrap();
    port.configure(&PortConfig::new(p.clone()).ring_sizes(1024, 1024))
        .unwrap();
    let (mut rx, _tx) = port.take_queues().unwrap();
    let mut held = Vec::new();
    let mut b = Burst::new();
    while rx[0].rx_burst(&mut b) > 0 {
        held.extend(b.drain());
    }
    assert!(held.len() >= 1000);
    assert!(port.stats().unwrap().rx_nombuf > 0);
    drop(held);
    drop((rx, _tx, port));
    assert!(full(&p));
}

#[test]
fn ring_ports_deliver_in_order_both_ways() {
    let p = pool("ringpair", 4096);
    {
        let mut a = Port::open("ring:pair1", 0).unwrap();
        let mut b = Port::open("net_ring:pair1", 1).unwrap();
        assert_ne!(a.mac_addr(), b.mac_addr());
        // The name is free again: a third open starts a new pair.
        let mut c = Port::open("ring:pair1", 2).unwrap();
        for port in [&mut a, &mut b, &mut c] {
            port.configure(&PortConfig::new(p.clone()).ring_sizes(64, 64))
                .unwrap();
            port.start().unwrap();
        }
        let (mut arx, mut atx) = a.take_queues().unwrap();
        let (mut brx, mut btx) = b.take_queues().unwrap();
        let mut burst = Burst::new();
        for i in 0..20u64 {
            let mut pkt = p.alloc().unwrap();
            pkt.extend_from_slice(&[0u8; 60]).unwrap();
            pkt.set_user(i);
            burst.push(pkt).unwrap();
        }
        assert_eq!(atx[0].tx_burst(&mut burst), 20);
        assert_eq!(brx[0].rx_burst(&mut burst), 20);
        assert!(
            burst
                .iter()
                .enumerate()
                .all(|(i, x)| x.user() == i as u64 && x.port() == 1)
        );
        assert_eq!(btx[0].tx_burst(&mut burst), 20);
        assert_eq!(arx[0].rx_burst(&mut burst), 20);
        assert!(burst.iter().all(|x| x.port() == 0));
        assert_eq!(a.stats().unwrap().opackets, 20);
        assert_eq!(a.stats().unwrap().ipackets, 20);
        assert_eq!(b.stats().unwrap().ibytes, 20 * 60);
        // Packets left inside a ring are freed when the ports go.
        assert_eq!(atx[0].tx_burst(&mut burst), 20);
    }
    assert!(full(&p));
}

#[test]
fn ring_port_full_ring_leaves_the_rest_in_the_burst() {
    let p = pool("ringfull", 8192);
    let mut a = Port::open("ring:full", 0).unwrap();
    let mut b = Port::open("ring:full", 1).unwrap();
    a.configure(&PortConfig::new(p.clone())).unwrap();
    b.configure(&PortConfig::new(p.clone())).unwrap();
    let (_arx, mut atx) = a.take_queues().unwrap();
    let mut sent = 0;
    let mut burst = Burst::new();
    loop {
        while !burst.is_full() {
            let mut pkt = p.alloc().unwrap();
            pkt.set_user(sent as u64 + burst.len() as u64);
            burst.push(pkt).unwrap();
        }
        let n = atx[0].tx_burst(&mut burst);
        sent += n;
        if n < 32 {
            break;
        }
    }
    assert_eq!(sent, oxpmd_pmd::vport::ring::RING_PORT_CAPACITY);
    assert_eq!(
        burst.as_slice()[0].user(),
        sent as u64,
        "the first unsent packet is at the front"
    );
}

#[test]
fn a_fault_port_passes_on_what_it_holds_when_called_with_nothing_new() {
    // Over a full inner ring, the fault port takes a burst it cannot pass on at once and holds
    // it (`held`); once the other end made room, a call with an empty burst sends it, so an
    // application that stops sending loses nothing it was told was taken.
    let p = pool("faultheld", 8192);
    let mut a = Port::open("fault:seed=1:ring:held", 0).unwrap();
    let mut b = Port::open("ring:held", 1).unwrap();
    a.configure(&PortConfig::new(p.clone())).unwrap();
    b.configure(&PortConfig::new(p.clone())).unwrap();
    let (_arx, mut atx) = a.take_queues().unwrap();
    let (mut brx, _btx) = b.take_queues().unwrap();
    let mut taken = 0;
    let mut burst = Burst::new();
    while atx[0].held() == 0 {
        while !burst.is_full() {
            burst.push(p.alloc().unwrap()).unwrap();
        }
        taken += atx[0].tx_burst(&mut burst);
        assert!(
            taken <= 2 * oxpmd_pmd::vport::ring::RING_PORT_CAPACITY,
            "never held anything"
        );
    }
    burst.clear();
    let mut received = 0;
    let mut rx = Burst::new();
    for _ in 0..1000 {
        received += brx[0].rx_burst(&mut rx);
        rx.clear();
        atx[0].reclaim();
        atx[0].tx_burst(&mut burst);
        if atx[0].held() == 0 && received == taken {
            break;
        }
    }
    assert_eq!(atx[0].held(), 0);
    assert_eq!(received, taken, "every packet the fault port took arrived");
    // Reclaim passes held packets on too; the next tx_burst counts them.
    assert_eq!(a.stats().unwrap().opackets, taken as u64, "counted once each");
}

#[test]
fn pci_devices_without_a_driver_fail_clearly() {
    // No such device in sysfs here: the error names the address and the operation.
    match Port::open("0000:7f:1f.7", 0) {
        Err(e) => assert!(e.to_string().contains("0000:7f:1f.7"), "{e}"),
        Ok(_) => panic!("opened a device that does not exist"),
    }
}

#[test]
fn a_ring_name_is_free_again_when_the_first_end_goes_unpaired() {
    let p = pool("ringalone", 4096);
    let a = Port::open("ring:alone", 0).unwrap();
    drop(a);
    // A new pair, not the dead port's peer: the two new ends talk to each other.
    let mut x = Port::open("ring:alone", 1).unwrap();
    let mut y = Port::open("ring:alone", 2).unwrap();
    x.configure(&PortConfig::new(p.clone())).unwrap();
    y.configure(&PortConfig::new(p.clone())).unwrap();
    let (_xr, mut xt) = x.take_queues().unwrap();
    let (mut yr, _yt) = y.take_queues().unwrap();
    let mut b = Burst::new();
    b.push(p.alloc().unwrap()).unwrap();
    assert_eq!(xt[0].tx_burst(&mut b), 1);
    assert_eq!(yr[0].rx_burst(&mut b), 1);
}

#[test]
fn queues_and_ports_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<oxpmd_pmd::RxQueue>();
    assert_send::<oxpmd_pmd::TxQueue>();
    assert_send::<Port>();
    assert_send::<Burst>();
}

#[test]
fn vlan_features_a_port_lacks_are_refused_with_what_it_offers() {
    let p = pool("vlan-cfg", 4096);
    for (cfg, what) in [
        (PortConfig::new(p.clone()).vlan_strip(true), "VLAN stripping"),
        (PortConfig::new(p.clone()).vlan_filter(true), "VLAN filtering"),
    ] {
        let mut port = Port::open("null0", 0).unwrap();
        let e = port.configure(&cfg).unwrap_err().to_string();
        assert!(
            e.contains(what) && e.contains("null0") && e.contains("offers: tx-multi-seg"),
            "{e}"
        );
    }
    let mut port = Port::open("null1", 1).unwrap();
    port.configure(&PortConfig::new(p.clone())).unwrap();
    let e = port.vlan_filter_add(100).unwrap_err().to_string();
    assert!(e.contains("PortConfig::vlan_filter(true)"), "{e}");
    let e = port.vlan_filter_add(4096).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn a_multicast_list_is_refused_without_a_filter_and_unicast_entries_are_named() {
    let mut port = Port::open("null0", 0).unwrap();
    let e = port
        .set_mc_addr_list(&["02:00:00:00:00:01".parse().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("02:00:00:00:00:01") && e.contains("not a multicast"),
        "{e}"
    );
    let e = port
        .set_mc_addr_list(&["01:00:5e:01:02:03".parse().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("multicast address list") && e.contains("null"), "{e}");
}
