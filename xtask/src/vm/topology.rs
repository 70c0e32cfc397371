//! The NIC topologies of the test VM: which NICs sit at which PCI address and which ports are linked.
//!
//! igb PFs reserve room for their 8 VFs: a VF takes devfn PF + 0x80 + 2 * i, so a PF in slot S puts its VFs
//! in slots S + 0x10 and S + 0x11. The q35 chipset keeps slot 0x1f (LPC, SATA, SMBus), so no PF sits in slot
//! 0x0e. Other devices (9p shares, virtio-net) use slots that no VF can take.

/// The model of an emulated NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// Intel 82576 (QEMU `-device igb`), 8086:10c9, SR-IOV with 8 VFs.
    Igb,
    /// virtio-net 1.0 behind the IOMMU (`disable-legacy=on,iommu_platform=on`), 1af4:1041.
    VirtioNet,
}

impl Model {
    /// The name exported as `OXPMD_PORTn_MODEL`.
    pub fn name(self) -> &'static str {
        match self {
            Model::Igb => "igb",
            Model::VirtioNet => "virtio-net",
        }
    }

    fn qemu_device(self) -> &'static str {
        match self {
            Model::Igb => "igb",
            Model::VirtioNet => "virtio-net-pci,disable-legacy=on,iommu_platform=on",
        }
    }
}

/// One NIC port of a topology.
#[derive(Clone, Debug)]
pub struct Port {
    /// Port index (`OXPMD_PORTn`).
    pub index: usize,
    /// NIC model.
    pub model: Model,
    /// PCI slot on bus 0 (function 0).
    pub slot: u8,
    /// Index of the port at the other end of the link.
    pub peer: usize,
    /// Role in the topology (`OXPMD_PORTn_ROLE`), e.g. `pktgen` or `dut` in `quad`.
    pub role: &'static str,
}

impl Port {
    /// The guest PCI address, e.g. `0000:00:02.0`.
    pub fn pci_addr(&self) -> String {
        format!("0000:00:{:02x}.0", self.slot)
    }

    /// The MAC address QEMU gives the port (fixed, so runs are reproducible).
    pub fn mac(&self) -> String {
        format!("52:54:00:00:01:{:02x}", self.index)
    }

    /// The QEMU id of the port's NIC (`-device ...,id=nicN`), which QMP's `set_link` names.
    pub fn nic_id(&self) -> String {
        format!("nic{}", self.index)
    }
}

/// A named set of ports and links.
#[derive(Clone, Debug)]
pub struct Topology {
    /// Name (`OXPMD_TOPOLOGY`).
    pub name: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// The ports, in index order.
    pub ports: Vec<Port>,
    /// Slot of a virtio-net 1.0 device WITHOUT `iommu_platform` (no ACCESS_PLATFORM), for the test
    /// that our driver refuses it. Not a port (no link, not in `OXPMD_PORTS`): exported as
    /// `OXPMD_VIRTIO_NO_IOMMU`.
    pub virtio_no_iommu: Option<u8>,
    /// The link (named by its lower port index) that runs through the host instead of a QEMU hub:
    /// each end on a tap device of the host, the two taps in a bridge ([`super::host_link`]).
    /// The virtio end's tap takes vnet headers, so QEMU's virtio-net offers its checksum and
    /// segmentation offloads (it clears them with a hub: hw/net/virtio-net.c,
    /// `virtio_net_get_features`), and the host kernel segments what reaches the igb end's tap,
    /// which takes none. Needs root on the host.
    pub host_link: Option<usize>,
}

/// QEMU's device for [`Topology::virtio_no_iommu`]: modern-only (1af4:1041), no ACCESS_PLATFORM.
const VIRTIO_NO_IOMMU_DEVICE: &str = "virtio-net-pci,disable-legacy=on";
/// The hub of that device's dangling netdev (no other port joins it).
const VIRTIO_NO_IOMMU_HUB: usize = 99;

/// The topology names `--topology` accepts.
pub const NAMES: [&str; 4] = ["pair", "quad", "virtio", "virtio-tap"];

fn port(index: usize, model: Model, slot: u8, peer: usize, role: &'static str) -> Port {
    Port {
        index,
        model,
        slot,
        peer,
        role,
    }
}

/// The ports of the `virtio` and `virtio-tap` topologies: igb 0 <-> igb 1, igb 2 <-> virtio-net 3.
fn virtio_ports() -> Vec<Port> {
    use Model::{Igb, VirtioNet};
    vec![
        port(0, Igb, 0x02, 1, "a"),
        port(1, Igb, 0x06, 0, "b"),
        port(2, Igb, 0x0a, 3, "a"),
        port(3, VirtioNet, 0x08, 2, "b"),
    ]
}

impl Topology {
    /// Looks a topology up by name.
    pub fn by_name(name: &str) -> Result<Topology, String> {
        use Model::Igb;
        let t = match name {
            "pair" => Topology {
                name: "pair",
                description: "two igb ports linked back to back (0 <-> 1)",
                ports: vec![port(0, Igb, 0x02, 1, "a"), port(1, Igb, 0x06, 0, "b")],
                virtio_no_iommu: None,
                host_link: None,
            },
            "quad" => Topology {
                name: "quad",
                description: "four igb ports, two links: pktgen 0 <-> dut 2, pktgen 1 <-> dut 3",
                ports: vec![
                    port(0, Igb, 0x02, 2, "pktgen"),
                    port(1, Igb, 0x06, 3, "pktgen"),
                    port(2, Igb, 0x0a, 0, "dut"),
                    port(3, Igb, 0x0c, 1, "dut"),
                ],
                virtio_no_iommu: None,
                host_link: None,
            },
            "virtio" => Topology {
                name: "virtio",
                description: "igb 0 <-> igb 1, and igb 2 <-> virtio-net 3 (plus a virtio-net without \
                              iommu_platform at 09.0, not a port)",
                ports: virtio_ports(),
                virtio_no_iommu: Some(0x09),
                host_link: None,
            },
            "virtio-tap" => Topology {
                name: "virtio-tap",
                description: "igb 0 <-> igb 1, and igb 2 <-> virtio-net 3 through two host taps in a \
                              bridge (the virtio end with vnet headers: checksum and TSO offloads)",
                ports: virtio_ports(),
                virtio_no_iommu: None,
                host_link: Some(2),
            },
            other => {
                return Err(format!(
                    "unknown topology `{other}`: choose one of {}",
                    NAMES.join(", ")
                ));
            }
        };
        Ok(t)
    }

    /// QEMU arguments for the NICs and their links: one hub per link, nothing but loopback;
    /// the [`Topology::host_link`] on the taps of `taps` (lower port's, higher port's).
    pub fn qemu_args(&self, taps: Option<[&str; 2]>) -> Vec<String> {
        let mut args = Vec::new();
        for p in &self.ports {
            // The hub id is the lower index of the two ends, so both ends join the same hub.
            let hub = p.index.min(p.peer);
            args.push("-netdev".into());
            match (self.host_link, taps) {
                (Some(link), Some(taps)) if link == hub => {
                    let tap = if p.index == hub { taps[0] } else { taps[1] };
                    let vnet = if p.model == Model::VirtioNet { "on" } else { "off" };
                    args.push(format!(
                        "tap,id=port{},ifname={tap},script=no,downscript=no,vnet_hdr={vnet}",
                        p.index
                    ));
                }
                _ => args.push(format!("hubport,id=port{},hubid={hub}", p.index)),
            }
            args.push("-device".into());
            args.push(format!(
                // No option ROM: the kernel is booted directly, and the firmware has less to run.
                "{},id={},netdev=port{},mac={},addr={:02x}.0,romfile=",
                p.model.qemu_device(),
                p.nic_id(),
                p.index,
                p.mac(),
                p.slot
            ));
        }
        if let Some(slot) = self.virtio_no_iommu {
            args.push("-netdev".into());
            args.push(format!("hubport,id=noiommu,hubid={VIRTIO_NO_IOMMU_HUB}"));
            args.push("-device".into());
            args.push(format!(
                "{VIRTIO_NO_IOMMU_DEVICE},netdev=noiommu,mac=52:54:00:00:02:00,addr={slot:02x}.0,romfile="
            ));
        }
        args
    }

    /// The QEMU ids of the NICs (what QMP's `set_link` may name).
    pub fn nic_ids(&self) -> Vec<String> {
        self.ports.iter().map(Port::nic_id).collect()
    }

    /// The environment the guest command gets (see docs/testvm.md).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("OXPMD_VM".to_string(), "1".to_string()),
            ("OXPMD_TOPOLOGY".to_string(), self.name.to_string()),
            ("OXPMD_NUM_PORTS".to_string(), self.ports.len().to_string()),
            (
                "OXPMD_PORTS".to_string(),
                self.ports
                    .iter()
                    .map(Port::pci_addr)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ];
        for p in &self.ports {
            let k = format!("OXPMD_PORT{}", p.index);
            env.push((k.clone(), p.pci_addr()));
            env.push((format!("{k}_MODEL"), p.model.name().to_string()));
            env.push((format!("{k}_PEER"), p.peer.to_string()));
            env.push((format!("{k}_MAC"), p.mac()));
            env.push((format!("{k}_ROLE"), p.role.to_string()));
            env.push((format!("{k}_NIC"), p.nic_id()));
        }
        if let Some(slot) = self.virtio_no_iommu {
            env.push((
                "OXPMD_VIRTIO_NO_IOMMU".to_string(),
                format!("0000:00:{slot:02x}.0"),
            ));
        }
        env
    }

    /// Ports that a built-in kernel driver would take at boot and that the guest init releases.
    pub fn ports_to_release(&self) -> Vec<String> {
        self.ports
            .iter()
            .filter(|p| p.model == Model::VirtioNet)
            .map(Port::pci_addr)
            .chain(self.virtio_no_iommu.map(|slot| format!("0000:00:{slot:02x}.0")))
            .collect()
    }

    /// A human-readable table of the ports.
    pub fn describe(&self) -> String {
        let mut s = format!("topology {}: {}\n", self.name, self.description);
        for p in &self.ports {
            s.push_str(&format!(
                "  port {}  {}  {:<10}  mac {}  peer {}  role {}\n",
                p.index,
                p.pci_addr(),
                p.model.name(),
                p.mac(),
                p.peer,
                p.role
            ));
        }
        if let Some(slot) = self.virtio_no_iommu {
            s.push_str(&format!(
                "  (not a port) 0000:00:{slot:02x}.0  virtio-net without iommu_platform: OXPMD_VIRTIO_NO_IOMMU\n"
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots taken by each port and, for igb, by its 8 VFs (devfn + 0x80, stride 2).
    fn slots(t: &Topology) -> Vec<(u8, String)> {
        let mut v = Vec::new();
        for p in &t.ports {
            v.push((p.slot, format!("port {}", p.index)));
            if p.model == Model::Igb {
                let base = u16::from(p.slot) << 3;
                for i in 0..8u16 {
                    let devfn = base + 0x80 + 2 * i;
                    let slot = u8::try_from(devfn >> 3).expect("devfn fits");
                    v.push((slot, format!("vf {i} of port {}", p.index)));
                }
            }
        }
        v
    }

    #[test]
    fn no_slot_collides_with_vfs_chipset_or_shares() {
        for name in NAMES {
            let t = Topology::by_name(name).unwrap();
            let mut fixed: Vec<(u8, String)> = vec![
                (0x00, "host bridge".into()),
                (0x1f, "ICH9 functions".into()),
                (super::super::launch::WORKSPACE_SHARE_SLOT, "9p workspace".into()),
                (super::super::launch::ROOT_SHARE_SLOT, "9p root".into()),
                (super::super::launch::RUN_SHARE_SLOT, "9p run".into()),
                (super::super::launch::RESULTS_SHARE_SLOT, "9p results".into()),
            ];
            let mut all = slots(&t);
            if let Some(slot) = t.virtio_no_iommu {
                all.push((slot, "virtio-net without iommu_platform".into()));
            }
            all.append(&mut fixed);
            // VFs of one PF share a slot on purpose (functions 0,2,4,6); collapse per owner.
            all.sort();
            all.dedup();
            for w in all.windows(2) {
                assert!(
                    w[0].0 != w[1].0 || w[0].1.split(" of ").last() == w[1].1.split(" of ").last(),
                    "{name}: slot {:02x} used by {} and {}",
                    w[0].0,
                    w[0].1,
                    w[1].1
                );
            }
        }
    }

    #[test]
    fn peers_are_symmetric() {
        for name in NAMES {
            let t = Topology::by_name(name).unwrap();
            for p in &t.ports {
                assert_ne!(p.peer, p.index);
                assert_eq!(t.ports[p.peer].peer, p.index, "{name}: port {}", p.index);
            }
        }
    }

    #[test]
    fn unknown_topology_is_an_error() {
        assert!(Topology::by_name("triangle").is_err());
    }
}
