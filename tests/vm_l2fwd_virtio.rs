//! vm-topology: virtio
//!
//! l2fwd between an igb port and the virtio-net port in ONE process (one VFIO container, one
//! mempool for both drivers), fed and checked by pktgen on the two other igb ports. Topology
//! `virtio`: igb 0 <-> igb 1, igb 2 <-> virtio-net 3. l2fwd forwards between port 1 (igb, l2fwd
//! id 0) and port 3 (virtio, id 1); pktgen sends on port 0 and receives on port 2, then the
//! reverse. For each direction exactly N frames of mixed sizes must arrive, intact except for
//! l2fwd's MAC rewrite, with no duplicate; l2fwd's final counters must agree and it must find
//! every buffer back in its pool. Pinned like `cargo xtask l2fwd` (the guest has 2 vCPUs): l2fwd
//! on core 1, pktgen on core 0 at a moderate rate.
//! Run with `cargo xtask vm test -p oxpmd vm_l2fwd_virtio`.

mod common;

use common::{L2fwd, both_ways, env, pktgen_exact, port};

const N: u64 = 3000;
/// pktgen's rate (frames/s): the emulated devices drop above what TCG sustains.
const RATE: &str = "10000";

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn l2fwd_forwards_between_igb_and_virtio_in_one_process() {
    assert_eq!(env("OXPMD_TOPOLOGY"), "virtio", "needs the virtio topology");
    let (gen_a, _, peer_a) = port(0);
    let (igb, igb_mac, _) = port(peer_a);
    let (gen_b, _, peer_b) = port(2);
    let (virtio, virtio_mac, _) = port(peer_b);
    assert_eq!(
        (peer_a, peer_b),
        (1, 3),
        "topology virtio: 0 <-> 1 (igb), 2 <-> 3 (virtio)"
    );
    // l2fwd ids: 0 = the igb port, 1 = the virtio port.
    let l2fwd = L2fwd::start(&[&igb, &virtio]);
    let mut failures = Vec::new();
    for way in both_ways([&gen_a, &gen_b], [&igb_mac, &virtio_mac]) {
        failures.extend(pktgen_exact(&way, N, &["--rate", RATE]));
    }

    // l2fwd's own view (printed in any case, so that a failure above can be located).
    l2fwd.stop_and_check([N, N], &failures);
}
