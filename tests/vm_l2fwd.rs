//! vm-topology: quad
//!
//! l2fwd between the two DUT ports of the `quad` topology, fed and checked by pktgen on the two
//! pktgen ports (each linked to one DUT port). Both are the example binaries, run as child
//! processes: `cargo test` builds the package's examples next to this test executable
//! (`target/<profile>/examples/`). For each direction N frames of mixed sizes go in on one DUT
//! port; exactly N must come out of the other, intact except for l2fwd's MAC rewrite (dst
//! 02:00:00:00:00:<tx port>, src = the DUT TX port's MAC), with no duplicate; l2fwd's own final
//! counters must agree, and it must find every buffer back in its pool.
//! Run with `cargo xtask vm test -p oxpmd vm_l2fwd`.

mod common;

use common::{L2fwd, pktgen_exact, quad};

const N: u64 = 3000;

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn l2fwd_forwards_every_frame_exactly_once_with_the_mac_rewrite() {
    let q = quad();
    let l2fwd = L2fwd::start(&[&q.dut[0], &q.dut[1]]);

    // Direction 0: pktgen port -> DUT port 0 (l2fwd id 0) -> DUT port 1 (id 1) -> pktgen port.
    // Direction 1: the reverse.
    let mut failures = Vec::new();
    for way in q.both_ways() {
        failures.extend(pktgen_exact(&way, N, &[]));
    }

    // l2fwd's own view (printed in any case, so that a failure above can be located).
    l2fwd.stop_and_check([N, N], &failures);
}
