//! The devices under test of the VM forwarding benches (`bench l2fwd-vm`, `bench rfc2544-vm`): our
//! `examples/l2fwd` and DPDK 22.11 `dpdk-testpmd`, both in io forwarding between the same two DUT
//! ports, fed by `examples/pktgen` on the generator ports.
//!
//! Both DUTs get the same settings, so that only the driver differs: frames forwarded unchanged
//! (l2fwd `--no-mac-updating`, testpmd `--forward-mode=io`), bursts of 32, 1024 RX and 1024 TX
//! descriptors per port, one forwarding core polling both ports on vCPU 1 (l2fwd `-q 2 --cores 1`;
//! testpmd `-l 0,1`, whose forwarding lcore is 1). The generator addresses its frames to DUT port
//! 0's MAC, so neither DUT needs promiscuous mode to accept them (testpmd turns it on anyway), and
//! receives them behind DUT port 1 in promiscuous mode (`-P`), since io forwarding keeps that
//! destination. Each DUT is started in the background, waited for, stopped with SIGINT after the
//! traffic, and its final counters are printed.

use std::path::Path;
use std::process::Command;

use crate::vm::{Topology, run_checked};

/// The ports of one forwarding bench, as guest PCI addresses: pktgen sends on `gen_tx` into DUT
/// port `dut[0]` and receives on `gen_rx` what DUT port `dut[1]` forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BenchPorts {
    /// The two DUT ports.
    pub dut: [String; 2],
    /// The MAC of `dut[0]`, the destination of the generated frames.
    pub dut0_mac: String,
    /// The generator's sending port, linked to `dut[0]`.
    pub gen_tx: String,
    /// The generator's receiving port, linked to `dut[1]`.
    pub gen_rx: String,
}

impl BenchPorts {
    /// The ports around DUT ports `dut0` and `dut1` (topology indices): their link peers generate.
    pub(crate) fn new(t: &Topology, dut0: usize, dut1: usize) -> Result<BenchPorts, String> {
        let port = |i: usize| {
            t.ports
                .get(i)
                .ok_or_else(|| format!("topology {} has no port {i}", t.name))
        };
        let (d0, d1) = (port(dut0)?, port(dut1)?);
        Ok(BenchPorts {
            dut: [d0.pci_addr(), d1.pci_addr()],
            dut0_mac: d0.mac(),
            gen_tx: port(d0.peer)?.pci_addr(),
            gen_rx: port(d1.peer)?.pci_addr(),
        })
    }

    /// The first two ports of role `dut` in `t` (the `quad` topology's 2 and 3).
    pub(crate) fn by_role(t: &Topology) -> Result<BenchPorts, String> {
        let duts: Vec<usize> = t
            .ports
            .iter()
            .filter(|p| p.role == "dut")
            .map(|p| p.index)
            .collect();
        match duts[..] {
            [a, b, ..] => BenchPorts::new(t, a, b),
            _ => Err(format!("topology {} has no two ports of role dut", t.name)),
        }
    }

    /// pktgen's port and addressing options (without the traffic options), pinned to vCPU 0.
    pub(crate) fn pktgen_command(&self) -> String {
        format!(
            "target/release/examples/pktgen --tx-port {} --rx-port {} --dst-mac {} -P --cores 0",
            self.gen_tx, self.gen_rx, self.dut0_mac
        )
    }
}

/// A device under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dut {
    /// Our `examples/l2fwd`.
    Ours,
    /// DPDK's `dpdk-testpmd`.
    Dpdk,
}

impl Dut {
    /// Both, in the order the benches run them.
    pub(crate) const ALL: [Dut; 2] = [Dut::Ours, Dut::Dpdk];

    /// The short name used in options, section markers and file names.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dut::Ours => "ours",
            Dut::Dpdk => "dpdk",
        }
    }

    /// The name of the program, for people.
    pub(crate) fn program(self) -> &'static str {
        match self {
            Dut::Ours => "oxpmd l2fwd",
            Dut::Dpdk => "DPDK testpmd",
        }
    }

    /// Parses a short name.
    pub(crate) fn by_name(name: &str) -> Result<Dut, String> {
        Dut::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| format!("`{name}` is not a DUT (ours, dpdk)"))
    }

    /// The guest command line of the DUT forwarding between `ports.dut`.
    pub(crate) fn command(self, ports: &BenchPorts) -> String {
        let [d0, d1] = &ports.dut;
        match self {
            Dut::Ours => format!(
                "target/release/examples/l2fwd --port {d0} --port {d1} -q 2 --cores 1 -T 0 --no-mac-updating"
            ),
            Dut::Dpdk => format!(
                "dpdk-testpmd -l 0,1 -n 1 --in-memory -a {d0} -a {d1} -- --forward-mode=io --auto-start \
                 --stats-period 5 --rxd=1024 --txd=1024 --burst=32"
            ),
        }
    }

    /// Shell that starts the DUT, waits until it forwards, runs `traffic`, stops the DUT with SIGINT
    /// and prints its final counters (l2fwd: its whole log, ending in the `all total` row; testpmd:
    /// the accumulated forward statistics). Needs [`WAIT_FOR_SH`] earlier in the script.
    pub(crate) fn session_sh(self, ports: &BenchPorts, traffic: &str) -> String {
        let cmd = self.command(ports);
        match self {
            Dut::Ours => format!(
                "{cmd} > /tmp/l2fwd.log 2>&1 &\n\
                 pid=$!\n\
                 wait_for /tmp/l2fwd.log \"workers\" || echo \"bench: l2fwd did not start\"\n\
                 {traffic}\n\
                 kill -INT $pid; wait $pid; echo \"l2fwd exit $?\"\n\
                 cat /tmp/l2fwd.log\n"
            ),
            Dut::Dpdk => format!(
                "{cmd} > /tmp/testpmd.log 2>&1 &\n\
                 pid=$!\n\
                 wait_for /tmp/testpmd.log \"packet forwarding\" || echo \"bench: testpmd did not start\"\n\
                 sleep 1\n\
                 {traffic}\n\
                 kill -INT $pid; wait $pid; echo \"testpmd exit $?\"\n\
                 sed -n '/Accumulated forward statistics/,$p' /tmp/testpmd.log \
                 | grep -E \"Accumulated|RX-packets|TX-packets\" | head -3\n"
            ),
        }
    }
}

/// Shell: `wait_for FILE TEXT` waits up to 180 s for TEXT to appear in FILE.
pub(crate) const WAIT_FOR_SH: &str = "wait_for() { n=0; while ! grep -q \"$2\" \"$1\" 2>/dev/null; do \
     n=$((n+1)); [ $n -gt 900 ] && return 1; sleep 0.2; done; }\n";

/// Builds the release `l2fwd` and `pktgen` examples that the guest runs.
pub(crate) fn build_examples(ws: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(ws).args([
        "build",
        "--release",
        "-p",
        "oxpmd",
        "--example",
        "l2fwd",
        "--example",
        "pktgen",
    ]);
    run_checked(&mut cmd, "cargo build --release of the examples")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quad_ports_and_command_lines() {
        let p = BenchPorts::by_role(&Topology::by_name("quad").unwrap()).unwrap();
        // quad: pktgen 0 <-> dut 2, pktgen 1 <-> dut 3.
        assert_eq!(p.dut, ["0000:00:0a.0".to_string(), "0000:00:0c.0".to_string()]);
        assert_eq!(p.dut0_mac, "52:54:00:00:01:02");
        assert_eq!(
            (p.gen_tx.as_str(), p.gen_rx.as_str()),
            ("0000:00:02.0", "0000:00:06.0")
        );
        assert!(BenchPorts::by_role(&Topology::by_name("pair").unwrap()).is_err());
        let ours = Dut::Ours.command(&p);
        assert!(ours.contains("--port 0000:00:0a.0 --port 0000:00:0c.0 -q 2 --cores 1"));
        assert!(!ours.contains(" -P"), "the DUT needs no promiscuous mode");
        let dpdk = Dut::Dpdk.command(&p);
        assert!(dpdk.contains("-a 0000:00:0a.0 -a 0000:00:0c.0 -- --forward-mode=io"));
        assert!(dpdk.contains("--rxd=1024 --txd=1024 --burst=32"));
        let s = Dut::Dpdk.session_sh(&p, "TRAFFIC");
        assert!(s.starts_with(&dpdk) && s.contains("\nTRAFFIC\nkill -INT $pid"));
        assert!(
            p.pktgen_command()
                .contains("--dst-mac 52:54:00:00:01:02 -P --cores 0")
        );
        assert_eq!(Dut::by_name("dpdk"), Ok(Dut::Dpdk));
        assert!(Dut::by_name("vpp").is_err());
    }

    #[test]
    fn virtio_row_ports() {
        // igb 1 (peer igb 0) and virtio-net 3 (peer igb 2).
        let p = BenchPorts::new(&Topology::by_name("virtio").unwrap(), 1, 3).unwrap();
        assert_eq!(p.dut, ["0000:00:06.0".to_string(), "0000:00:08.0".to_string()]);
        assert_eq!(
            (p.gen_tx.as_str(), p.gen_rx.as_str()),
            ("0000:00:02.0", "0000:00:0a.0")
        );
        assert!(BenchPorts::new(&Topology::by_name("virtio").unwrap(), 1, 9).is_err());
    }
}
