//! The guest's kernel modules: which are shipped, their dependencies from their own metadata, and
//! the order they are loaded in.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Modules loaded at boot, with parameters (dependencies are added from the modules' own metadata).
///
/// vfio_pci `disable_idle_d3=1`: vfio-pci puts a device it holds unopened into D3hot, and QEMU
/// unmaps the BARs of a function not in D0 (hw/pci/pci.c `pci_update_mappings`), so every open
/// and close of a port by a test remapped its BARs. Under multi-threaded TCG such a memory map
/// change while another vCPU does MMIO can abort QEMU: that vCPU's TLB entry holds a section
/// index of the old map, which `iotlb_to_section` (system/physmem.c) looks up in the new one
/// before the TLB flush queued for it has run ("Assertion `section_index < d->map.sections_nb'
/// failed", seen in a vm_l2fwd run). Kept in D0, the ports' BARs stay mapped from boot on; resets
/// still remap them, far more rarely.
pub(super) const BOOT_MODULES: &[(&str, &str)] = &[
    ("vfio_pci", "enable_sriov=1 disable_idle_d3=1"),
    ("vfio_iommu_type1", ""),
    ("9pnet_virtio", ""),
    ("9p", ""),
];
/// Modules shipped for on-demand loading only (`$OXPMD_VM_MODPROBE igb`): never loaded at boot, so the
/// kernel drivers do not take the test NICs. `veth` gives the AF_XDP tests (`vm_xdp_veth`) a
/// driver-independent pair of interfaces.
pub(super) const ON_DEMAND_MODULES: &[&str] = &["igb", "igbvf", "virtio_net", "8021q", "veth"];

/// Module name as the kernel writes it (`-` becomes `_`).
pub(super) fn norm(name: &str) -> String {
    name.replace('-', "_")
}

/// Reads the `.modinfo` section strings of an (uncompressed) ELF module.
pub(super) fn modinfo(data: &[u8]) -> Option<Vec<String>> {
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().ok().unwrap_or([0; 4])))
    };
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if data.get(..4)? != b"\x7fELF" {
        return None;
    }
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    let shstrndx = usize::from(u16_at(0x3e)?);
    let section = |i: usize| -> Option<(u32, usize, usize)> {
        let base = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = u32_at(base)?;
        let off = usize::try_from(u64_at(base + 0x18)?).ok()?;
        let size = usize::try_from(u64_at(base + 0x20)?).ok()?;
        Some((name, off, size))
    };
    let (_, str_off, str_size) = section(shstrndx)?;
    let strtab = data.get(str_off..str_off.checked_add(str_size)?)?;
    for i in 0..shnum {
        let (name, off, size) = section(i)?;
        let name = strtab.get(usize::try_from(name).ok()?..)?;
        let end = name.iter().position(|&b| b == 0)?;
        if &name[..end] == b".modinfo" {
            let body = data.get(off..off.checked_add(size)?)?;
            return Some(
                body.split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            );
        }
    }
    None
}

/// Dependencies of a module from its modinfo: `depends=` and the `softdep=` pre/post lists.
pub(super) fn module_deps(info: &[String]) -> (Vec<String>, Vec<String>) {
    let mut hard = Vec::new();
    let mut post = Vec::new();
    for entry in info {
        if let Some(list) = entry.strip_prefix("depends=") {
            hard.extend(list.split(',').filter(|s| !s.is_empty()).map(norm));
        } else if let Some(spec) = entry.strip_prefix("softdep=") {
            let mut target = &mut hard;
            for word in spec.split_whitespace() {
                match word {
                    "pre:" => target = &mut hard,
                    "post:" => target = &mut post,
                    w => target.push(norm(w)),
                }
            }
        }
    }
    (hard, post)
}

/// The module set of the guest: files and dependency-ordered load lists.
pub(super) struct ModuleSet {
    /// name -> decompressed module bytes.
    pub(super) files: BTreeMap<String, Vec<u8>>,
    /// name -> load order (dependencies first, the module last).
    pub(super) order: BTreeMap<String, Vec<String>>,
}

/// Resolves `wanted` against the unpacked kernel tree (index: name -> path of the .ko[.xz|.zst]).
pub(super) fn resolve_modules(
    index: &BTreeMap<String, PathBuf>,
    wanted: &[&str],
) -> Result<ModuleSet, String> {
    let mut files = BTreeMap::new();
    let mut deps: DepMap = BTreeMap::new();
    let mut todo: Vec<String> = wanted.iter().map(|w| norm(w)).collect();
    while let Some(name) = todo.pop() {
        if deps.contains_key(&name) {
            continue;
        }
        let Some(path) = index.get(&name) else {
            // A dependency that is built into the kernel (or absent on this architecture) has no file.
            if wanted.iter().any(|w| norm(w) == name) {
                return Err(format!("module {name} not found in the guest kernel package"));
            }
            continue;
        };
        let data = read_module(path)?;
        let info = modinfo(&data).ok_or_else(|| format!("{}: no .modinfo section", path.display()))?;
        let (hard, post) = module_deps(&info);
        todo.extend(hard.iter().cloned());
        todo.extend(post.iter().cloned());
        files.insert(name.clone(), data);
        deps.insert(name, (hard, post));
    }
    Ok(ModuleSet {
        files,
        order: load_order(&deps),
    })
}

/// Dependency map (name -> (hard and pre-soft dependencies, post-soft dependencies)).
pub(super) type DepMap = BTreeMap<String, (Vec<String>, Vec<String>)>;

/// For each module, the modules to insert in order: dependencies first, the module, then its post
/// soft dependencies. Names absent from `deps` (built into the kernel) are skipped; cycles are cut.
pub(super) fn load_order(deps: &DepMap) -> BTreeMap<String, Vec<String>> {
    fn visit(name: &str, deps: &DepMap, seen: &mut BTreeSet<String>, out: &mut Vec<String>) {
        let Some((hard, post)) = deps.get(name) else {
            return;
        };
        if !seen.insert(name.to_string()) {
            return;
        }
        for d in hard {
            visit(d, deps, seen, out);
        }
        out.push(name.to_string());
        for d in post {
            visit(d, deps, seen, out);
        }
    }
    deps.keys()
        .map(|name| {
            let mut out = Vec::new();
            visit(name, deps, &mut BTreeSet::new(), &mut out);
            (name.clone(), out)
        })
        .collect()
}

pub(super) fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        Some("xz")
    } else if name.ends_with(".ko.zst") {
        Some("zstd")
    } else if name.ends_with(".ko.gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => fs::read(path).map_err(|e| format!("read {name}: {e}")),
        Some(tool) => {
            let out = Command::new(tool)
                .arg("-dc")
                .arg(path)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("{tool} -dc {name}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "{tool} -dc {name} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(out.stdout)
        }
    }
}

/// Index of every module file in `modules_dir`: normalized name -> path.
pub(super) fn index_modules(modules_dir: &Path) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut index = BTreeMap::new();
    let mut stack = vec![modules_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("read {}: {e}", dir.display()))?;
            let path = entry.path();
            let ft = entry
                .file_type()
                .map_err(|e| format!("stat {}: {e}", path.display()))?;
            if ft.is_dir() {
                stack.push(path);
            } else if let Some(file) = path.file_name().and_then(|f| f.to_str())
                && let Some(stem) = file.find(".ko").map(|i| &file[..i])
            {
                index.insert(norm(stem), path.clone());
            }
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softdeps_split_pre_and_post() {
        let info = vec![
            "depends=vfio-pci-core,vfio".to_string(),
            "softdep=pre: irqbypass post: vfio_iommu_type1 vfio_iommu_spapr_tce".to_string(),
        ];
        let (hard, post) = module_deps(&info);
        assert_eq!(hard, ["vfio_pci_core", "vfio", "irqbypass"]);
        assert_eq!(post, ["vfio_iommu_type1", "vfio_iommu_spapr_tce"]);
    }

    #[test]
    fn load_order_puts_dependencies_first() {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut deps = DepMap::new();
        deps.insert("vfio_pci".into(), (v(&["vfio_pci_core", "vfio"]), vec![]));
        deps.insert("vfio_pci_core".into(), (v(&["irqbypass", "vfio"]), vec![]));
        deps.insert(
            "vfio".into(),
            (vec![], v(&["vfio_iommu_type1", "vfio_iommu_spapr_tce"])),
        );
        deps.insert("vfio_iommu_type1".into(), (v(&["vfio"]), vec![]));
        deps.insert("irqbypass".into(), (vec![], vec![]));
        let order = load_order(&deps);
        assert_eq!(
            order["vfio_pci"],
            [
                "irqbypass",
                "vfio",
                "vfio_iommu_type1",
                "vfio_pci_core",
                "vfio_pci"
            ]
        );
        assert_eq!(order["irqbypass"], ["irqbypass"]);
    }
}
