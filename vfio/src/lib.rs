//! oxpmd-vfio: The kernel interface of oxpmd: VFIO container, group, device, VF token, sysfs PCI.
