//! vm-topology: quad
//!
//! `examples/l2fwd` between an igb port our driver owns through VFIO and an `xdp:` port on the
//! guest kernel's igb driver, fed and checked by `examples/pktgen` on the two pktgen ports (each
//! linked to one DUT port), as users run them: pktgen → link → VFIO igb → l2fwd → AF_XDP TX →
//! the kernel's igb → link → pktgen, and back through XDP and AF_XDP RX. One pool serves both
//! DUT ports (chunk-aligned, because the xdp: port asks for it: its pool is the UMEM). For each
//! direction N frames of 64 to 1518 bytes at a moderate rate; exactly N must come out, intact but
//! for l2fwd's MAC rewrite, none duplicated; l2fwd's own counters must agree and it must find every
//! buffer back in its pool. Run with `cargo xtask vm test -p oxpmd vm_l2fwd_xdp`.

mod common;
#[path = "../pmd/tests/vm_kernel_peer/mod.rs"]
mod vm_kernel_peer;

use common::{L2fwd, pktgen_exact, quad};
use oxpmd::vfio::PciAddress;
use oxpmd::vfio::pci::Sysfs;
use vm_kernel_peer::{KernelPort, run, wait_carrier};

const N: u64 = 2000;

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn l2fwd_forwards_pktgen_frames_between_vfio_igb_and_xdp_on_the_kernels_igb() {
    let q = quad();
    // The kernel's igb binds every igb function it finds without a driver when it loads: the
    // ports that stay ours go to vfio-pci first.
    let sys = Sysfs::new();
    for a in [&q.gen_port[0], &q.gen_port[1], &q.dut[0]] {
        let addr = PciAddress::parse(a).unwrap();
        sys.bind_vfio_pci(addr)
            .unwrap_or_else(|e| panic!("bind {a} to vfio-pci: {e}"));
    }
    let kernel = KernelPort::bind(&q.dut[1]);
    let iface = kernel.iface.clone();
    println!("DUT port 1 {} is the kernel's {iface}", q.dut[1]);
    // Its own traffic (IPv6 neighbour and multicast listener messages) would reach pktgen as
    // frames it did not send: none.
    let v6 = format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6");
    if std::path::Path::new(&v6).exists() {
        std::fs::write(&v6, "1").unwrap();
    }
    // l2fwd polls one queue per port: every frame to that queue.
    run("ethtool", &["-L", &iface, "combined", "1"]);
    run("ip", &["link", "set", "dev", &iface, "up"]);
    wait_carrier(&iface);

    let xdp = format!("xdp:{iface}:0");
    let l2fwd = L2fwd::start(&[&q.dut[0], &xdp]);
    let mut failures = Vec::new();
    for way in q.both_ways() {
        failures.extend(pktgen_exact(&way, N, &["--rate", "2000"]));
    }
    l2fwd.stop_and_check([N, N], &failures);
    drop(kernel);
}
