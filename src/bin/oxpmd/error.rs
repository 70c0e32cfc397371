//! The tool's errors: each names what was being done, on which device, and the fix.

use std::path::{Path, PathBuf};

/// Every failure of a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The vfio crate failed (its message carries the cause and fix).
    #[error("{0}")]
    Vfio(#[from] oxpmd::vfio::Error),

    /// A file operation failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The state file is not what `oxpmd bind` writes.
    #[error(
        "state file {}{}: {why}. Refused (it is not used). Fix: check which drivers the devices need, \
         `rm {}`, and bind them back by hand (`oxpmd unbind --driver DRIVER ADDR`)",
        .path.display(), if *.line > 0 { format!(" line {line}") } else { String::new() }, .path.display()
    )]
    BadState {
        /// The file.
        path: PathBuf,
        /// The offending line (0: the file as a whole).
        line: usize,
        /// What is wrong.
        why: String,
    },

    /// Binding would leave the device's IOMMU group not viable.
    #[error(
        "{address}: IOMMU group {group} would not be viable: {} still bound to a kernel driver: {}. VFIO \
         opens a group only when every member is on vfio-pci or on no driver. Refused. Fix: `oxpmd bind --group \
         {address}` binds the whole group (each member's driver is remembered for `oxpmd unbind --group`), or \
         unbind those devices first",
        if .others.len() == 1 { "another member is" } else { "other members are" },
        .others.join(", ")
    )]
    GroupNotViable {
        /// The device asked for.
        address: String,
        /// Its group.
        group: u32,
        /// The members on a kernel driver, as "ADDR (driver D)".
        others: Vec<String>,
    },

    /// Binding would take the host's own network connection away.
    #[error(
        "{address} carries the host's network: interface {ifname} is up with {}. Binding it to vfio-pci \
         would cut that traffic. Refused. Fix: pick another port, or move the traffic off {ifname} (`ip link \
         set {ifname} down`), or pass --force if this is intended",
        .routes.join(", ")
    )]
    HostRoute {
        /// The device.
        address: String,
        /// Its interface.
        ifname: String,
        /// What ties it to the host's network.
        routes: Vec<String>,
    },

    /// A device has no IOMMU group: the IOMMU is off.
    #[error(
        "{address} has no IOMMU group: the IOMMU is off. Fix: enable VT-d / AMD-Vi in the firmware, add \
         intel_iommu=on (Intel) or amd_iommu=on (AMD) to the kernel command line (GRUB_CMDLINE_LINUX in \
         /etc/default/grub, `update-grub`) and reboot"
    )]
    NoIommuGroup {
        /// The device.
        address: String,
    },

    /// A driver the command needs is not loaded.
    #[error("{what}: the {driver} driver is not loaded. Fix: `modprobe {driver}`")]
    DriverNotLoaded {
        /// What needed it.
        what: String,
        /// The driver.
        driver: String,
    },

    /// A command-line value is invalid (reported like clap's usage errors, exit status 2).
    #[error("{0}")]
    Usage(String),

    /// vfio-pci refuses SR-IOV on its PFs.
    #[error(
        "{address} is bound to vfio-pci, which was loaded without enable_sriov: the kernel refuses VFs (ENOENT). \
         Fix: `echo 1 > /sys/module/vfio_pci/parameters/enable_sriov` (now), and `echo \"options vfio-pci \
         enable_sriov=1\" > /etc/modprobe.d/vfio-pci.conf` (at boot)"
    )]
    SriovDisabled {
        /// The PF.
        address: String,
    },

    /// vfio-pci binds no PF with VFs enabled.
    #[error(
        "{address} has {vfs} VFs enabled, and vfio-pci refuses a PF with SR-IOV enabled (EBUSY). Refused. Fix: \
         `oxpmd sriov {address} --vfs 0`, `oxpmd bind {address}`, then `oxpmd sriov {address} --vfs {vfs}`"
    )]
    VfsEnabled {
        /// The PF.
        address: String,
        /// Its VF count.
        vfs: u16,
    },

    /// A PF on no driver cannot enable VFs.
    #[error(
        "{address} is bound to no driver: only a PF's driver can enable VFs (the kernel answers ENOENT). Fix: \
         `oxpmd bind {address}` (vfio-pci, loaded with enable_sriov=1) or bind its kernel driver"
    )]
    PfUnbound {
        /// The PF.
        address: String,
    },

    /// The PF service failed (its message names the device, the step and the fix).
    #[error("{0}")]
    Service(String),

    /// The control socket could not be reached (no service, or not allowed in).
    #[error(transparent)]
    Connect(#[from] oxpmd::pmd::sriov::control_client::ConnectError),

    /// The PF service refused the request.
    #[error("the PF service refused ({kind}): {message}")]
    Refused {
        /// The error kind it named.
        kind: String,
        /// Its message.
        message: String,
    },

    /// Some devices of a multi-device command failed (each was reported).
    #[error("{failed} of {total} devices failed")]
    Partial {
        /// How many failed.
        failed: usize,
        /// How many were asked for.
        total: usize,
    },
}

impl CliError {
    /// An I/O error on `path`.
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        CliError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// The process exit status for this error: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}
