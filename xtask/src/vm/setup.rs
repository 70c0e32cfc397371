//! `cargo xtask vm setup`: host packages, the guest kernel and the initramfs, cached under target/testvm/.
//!
//! Idempotent: every step checks first; a second run changes nothing and says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{Paths, run_checked};

/// The Debian meta package naming the current 6.12 kernel.
const KERNEL_META: &str = "linux-image-6.12-amd64";
/// Fallback meta package, accepted only while it points at a 6.12 kernel (e.g. on Debian 13).
const KERNEL_META_FALLBACK: &str = "linux-image-amd64";
/// The kernel series the harness is written for (module set, VFIO behaviour).
const KERNEL_SERIES: &str = "linux-image-6.12.";
/// Lowest QEMU with `-device igb`.
const QEMU_MIN: (u32, u32) = (8, 1);
/// The init script of the initramfs.
const INIT_SCRIPT: &str = include_str!("init.sh");

/// Modules loaded at boot, with parameters (dependencies are added from the modules' own metadata).
const BOOT_MODULES: &[(&str, &str)] = &[
    ("vfio_pci", "enable_sriov=1"),
    ("vfio_iommu_type1", ""),
    ("9pnet_virtio", ""),
    ("9p", ""),
];
/// Modules shipped for on-demand loading only (`$OXPMD_VM_MODPROBE igb`): never loaded at boot, so the
/// kernel drivers do not take the test NICs. `veth` gives the AF_XDP tests (`vm_xdp_veth`) a
/// driver-independent pair of interfaces.
const ON_DEMAND_MODULES: &[&str] = &["igb", "igbvf", "virtio_net", "8021q", "veth"];

/// Host packages the harness needs, with the binary that proves each is there.
const PACKAGES: &[(&str, &str)] = &[
    ("busybox-static", "/bin/busybox"),
    ("cpio", "/usr/bin/cpio"),
    ("xz-utils", "/usr/bin/xz"),
    ("dpdk", "/usr/bin/dpdk-devbind.py"),
    ("dpdk-dev", "/usr/bin/dpdk-testpmd"),
    // Reads back the captures of `--pcap` (tests/vm_pcap.rs).
    ("tshark", "/usr/bin/tshark"),
    // Turns the kernel peer's GRO off, so a capture shows the segments that crossed the link
    // (pmd/tests/vm_tso.rs).
    ("ethtool", "/usr/sbin/ethtool"),
    // Runs the packet-memory tests under memcheck (`cargo xtask memcheck`, part of `test`).
    ("valgrind", "/usr/bin/valgrind"),
];

/// Runs the whole setup.
pub fn setup(paths: &Paths) -> Result<(), String> {
    let start = Instant::now();
    let mut changed = false;
    changed |= ensure_packages()?;
    let kernel = ensure_kernel(paths, &mut changed)?;
    changed |= ensure_initramfs(paths, &kernel)?;
    let secs = start.elapsed().as_secs_f64();
    if changed {
        println!("vm setup: done in {secs:.1} s ({})", paths.testvm.display());
    } else {
        println!("vm setup: up to date ({secs:.1} s, {})", paths.testvm.display());
    }
    Ok(())
}

/// What `run` needs, checked without installing anything.
pub fn check_ready(paths: &Paths) -> Result<(), String> {
    qemu_ok().map_err(|e| format!("{e}: run `cargo xtask vm setup`"))?;
    let stamp = paths.testvm.join("initramfs.stamp");
    if !paths.kernel().is_file() || !paths.initramfs().is_file() || !stamp.is_file() {
        return Err(format!(
            "no guest kernel/initramfs under {}: run `cargo xtask vm setup`",
            paths.testvm.display()
        ));
    }
    let kernel = read_kernel_info(paths)?;
    if fs::read_to_string(&stamp).ok().as_deref() != Some(initramfs_stamp(&kernel).as_str()) {
        // Only the init script or module list changed: rebuilding needs no network.
        println!("vm: the initramfs is out of date, rebuilding it");
        ensure_initramfs(paths, &kernel)?;
    }
    Ok(())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Parses "QEMU emulator version 10.0.2 (...)" into (major, minor).
fn parse_qemu_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.split("version ").nth(1)?;
    let mut it = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// QEMU is present, new enough, and has `-device igb`.
pub fn qemu_ok() -> Result<(), String> {
    let hint = "QEMU >= 8.1 with -device igb needed";
    let out = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{hint} (qemu-system-x86_64: {e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_qemu_version(&text)
        .ok_or_else(|| format!("{hint} (cannot parse `qemu-system-x86_64 --version`: {text:?})"))?;
    if version < QEMU_MIN {
        return Err(format!("{hint} (found {}.{})", version.0, version.1));
    }
    let out = Command::new("qemu-system-x86_64")
        .args(["-device", "help"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{hint} (qemu-system-x86_64 -device help: {e})"))?;
    if !String::from_utf8_lossy(&out.stdout).contains("name \"igb\"") {
        return Err(format!("{hint} (this QEMU has no igb device)"));
    }
    Ok(())
}

fn package_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "install ok installed")
        .unwrap_or(false)
}

/// True if the ELF file at `path` has no program interpreter (a static binary).
fn is_static_elf(path: &Path) -> Result<bool, String> {
    let data = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let bad = || format!("{} is not a 64-bit little-endian ELF file", path.display());
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(bad)?).map_err(|_| bad())?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    for i in 0..phnum {
        let off = phoff
            .checked_add(i.checked_mul(phentsize).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        let p_type = data.get(off..off + 4).ok_or_else(bad)?;
        if u32::from_le_bytes(p_type.try_into().expect("4 bytes")) == 3 {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

fn apt_env(cmd: &mut Command) -> &mut Command {
    cmd.env("DEBIAN_FRONTEND", "noninteractive").stdin(Stdio::null())
}

/// The Debian codename from /etc/os-release (e.g. `bookworm`).
fn codename() -> Result<String, String> {
    let text = fs::read_to_string("/etc/os-release").map_err(|e| format!("read /etc/os-release: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| "no VERSION_CODENAME in /etc/os-release: not a Debian system?".to_string())
}

/// Text of every apt source file.
fn apt_sources() -> Vec<(PathBuf, String)> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
        .into_iter()
        .filter_map(|p| fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect()
}

/// The URI configured for the main Debian archive (the one that serves `codename`), from deb822 or
/// one-line sources. Nothing is hard-coded: the machine's own configuration is reused.
fn debian_uri(codename: &str) -> Option<String> {
    apt_sources().iter().find_map(|(path, text)| {
        uri_from_source(path.extension().is_some_and(|x| x == "sources"), text, codename)
    })
}

/// The first `deb` URI serving `codename` in one source file (deb822 or one-line format).
fn uri_from_source(deb822: bool, text: &str, codename: &str) -> Option<String> {
    if deb822 {
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else {
                continue;
            };
            let types = field("Types:").unwrap_or_default();
            if types.split_whitespace().any(|t| t == "deb")
                && suites.split_whitespace().any(|s| s == codename)
            {
                return uris.split_whitespace().next().map(str::to_string);
            }
        }
    } else {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            // Skip an options block: deb [signed-by=...] URI suite ...
            let words: Vec<&str> = match words.iter().position(|w| w.ends_with(']')) {
                Some(i) if words.get(1).is_some_and(|w| w.starts_with('[')) => std::iter::once(words[0])
                    .chain(words[i + 1..].iter().copied())
                    .collect(),
                _ => words,
            };
            if words.len() >= 3 && words[0] == "deb" && words[2] == codename {
                return Some(words[1].to_string());
            }
        }
    }
    None
}

fn backports_configured(codename: &str) -> bool {
    let suite = format!("{codename}-backports");
    apt_sources().iter().any(|(_, text)| {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.split_whitespace().any(|w| w == suite))
    })
}

fn apt_update() -> Result<(), String> {
    println!("vm setup: apt-get update");
    run_checked(
        apt_env(Command::new("apt-get").args(["-q", "update"])),
        "apt-get update",
    )
}

/// Installs the missing host packages. Returns whether anything changed.
fn ensure_packages() -> Result<bool, String> {
    let need_qemu = match qemu_ok() {
        Ok(()) => false,
        Err(e) => {
            println!("vm setup: {e}");
            true
        }
    };
    let mut missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(pkg, bin)| !package_installed(pkg) || !Path::new(bin).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if !missing.contains(&"busybox-static") && !is_static_elf(Path::new("/bin/busybox"))? {
        missing.push("busybox-static");
    }
    if !need_qemu && missing.is_empty() {
        println!(
            "vm setup: host packages up to date (QEMU with igb, busybox-static, cpio, xz, dpdk, tshark, ethtool, valgrind)"
        );
        return Ok(false);
    }
    if !is_root() {
        return Err(format!(
            "vm setup must install {}{}: run it as root",
            if need_qemu {
                "qemu-system-x86 (backports) "
            } else {
                ""
            },
            missing.join(" ")
        ));
    }
    let codename = codename()?;
    if need_qemu && !backports_configured(&codename) {
        let uri = debian_uri(&codename).ok_or_else(|| {
            format!("no apt source for Debian {codename} found to derive the {codename}-backports suite from")
        })?;
        let line = format!("deb {uri} {codename}-backports main\n");
        let file = "/etc/apt/sources.list.d/backports.list";
        fs::write(file, &line).map_err(|e| format!("write {file}: {e}"))?;
        println!("vm setup: added {codename}-backports to {file}");
    }
    apt_update()?;
    if need_qemu {
        let suite = format!("{codename}-backports");
        println!("vm setup: installing qemu-system-x86 from {suite}");
        run_checked(
            apt_env(Command::new("apt-get").args([
                "-q",
                "-y",
                "--no-install-recommends",
                "install",
                "-t",
                &suite,
                "qemu-system-x86",
            ])),
            "apt-get install qemu-system-x86",
        )?;
        qemu_ok()?;
    }
    if !missing.is_empty() {
        println!("vm setup: installing {}", missing.join(" "));
        let mut cmd = Command::new("apt-get");
        cmd.args(["-q", "-y", "--no-install-recommends", "install"])
            .args(&missing);
        run_checked(apt_env(&mut cmd), "apt-get install")?;
    }
    Ok(true)
}

/// The guest kernel: release string and where its pieces are.
pub struct KernelInfo {
    /// `uname -r` of the guest, e.g. `6.12.117+deb12-amd64`.
    pub release: String,
    /// Package name and version it came from.
    pub package: String,
}

fn read_kernel_info(paths: &Paths) -> Result<KernelInfo, String> {
    let stamp = paths.testvm.join("kernel/package");
    let text =
        fs::read_to_string(&stamp).map_err(|_| "no guest kernel: run `cargo xtask vm setup`".to_string())?;
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(package), Some(release)) => Ok(KernelInfo {
            package: package.to_string(),
            release: release.to_string(),
        }),
        _ => Err(format!(
            "{} is damaged: run `cargo xtask vm setup`",
            stamp.display()
        )),
    }
}

/// Parses `apt-cache depends` output for the versioned 6.12 linux-image package a meta package names.
fn kernel_package_from_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches('|');
            l.strip_prefix("Depends:").map(str::trim)
        })
        .find(|p| p.starts_with(KERNEL_SERIES) && p.ends_with("-amd64") && !p.contains('<'))
        .map(str::to_string)
}

fn apt_candidate(pkg: &str) -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["policy", pkg])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:").map(|v| v.trim().to_string()))
        .filter(|v| v != "(none)")
}

/// Resolves the current versioned kernel package, updating the apt lists once if needed.
fn resolve_kernel_package() -> Result<(String, String), String> {
    for attempt in 0..2 {
        for meta in [KERNEL_META, KERNEL_META_FALLBACK] {
            let out = Command::new("apt-cache")
                .args(["depends", meta])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("apt-cache depends {meta}: {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(pkg) = kernel_package_from_depends(&text)
                && let Some(version) = apt_candidate(&pkg)
            {
                return Ok((pkg, version));
            }
        }
        if attempt == 0 {
            if !is_root() {
                break;
            }
            apt_update()?;
        }
    }
    Err(format!(
        "apt knows no installable package behind {KERNEL_META}: check the apt sources (Debian {} with security updates)",
        codename().unwrap_or_default()
    ))
}

/// Module name as the kernel writes it (`-` becomes `_`).
fn norm(name: &str) -> String {
    name.replace('-', "_")
}

/// Reads the `.modinfo` section strings of an (uncompressed) ELF module.
fn modinfo(data: &[u8]) -> Option<Vec<String>> {
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
fn module_deps(info: &[String]) -> (Vec<String>, Vec<String>) {
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
struct ModuleSet {
    /// name -> decompressed module bytes.
    files: BTreeMap<String, Vec<u8>>,
    /// name -> load order (dependencies first, the module last).
    order: BTreeMap<String, Vec<String>>,
}

/// Resolves `wanted` against the unpacked kernel tree (index: name -> path of the .ko[.xz|.zst]).
fn resolve_modules(index: &BTreeMap<String, PathBuf>, wanted: &[&str]) -> Result<ModuleSet, String> {
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
type DepMap = BTreeMap<String, (Vec<String>, Vec<String>)>;

/// For each module, the modules to insert in order: dependencies first, the module, then its post
/// soft dependencies. Names absent from `deps` (built into the kernel) are skipped; cycles are cut.
fn load_order(deps: &DepMap) -> BTreeMap<String, Vec<String>> {
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

fn read_module(path: &Path) -> Result<Vec<u8>, String> {
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
fn index_modules(modules_dir: &Path) -> Result<BTreeMap<String, PathBuf>, String> {
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

/// `apt-get download` of exactly `pkg` into `dir` (a glob would fetch every matching package).
fn download_package(dir: &Path, pkg: &str) -> Result<(), String> {
    run_checked(
        apt_env(Command::new("apt-get").current_dir(dir).args([
            "-q",
            "-o",
            "APT::Sandbox::User=root",
            "download",
            pkg,
        ])),
        &format!("apt-get download {pkg}"),
    )
}

/// Downloads and unpacks the guest kernel if the cached one is not the current package.
fn ensure_kernel(paths: &Paths, changed: &mut bool) -> Result<KernelInfo, String> {
    let (mut pkg, mut version) = resolve_kernel_package()?;
    let mut package = format!("{pkg} {version}");
    let kdir = paths.testvm.join("kernel");
    if let Ok(info) = read_kernel_info(paths)
        && info.package == package
        && paths.kernel().is_file()
        && kdir.join("modules").is_dir()
        && modules_unpacked(&kdir)
    {
        println!("vm setup: guest kernel {} up to date", info.release);
        return Ok(info);
    }
    *changed = true;
    let work = paths.testvm.join("download");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
    println!("vm setup: downloading {pkg} {version}");
    if let Err(e) = download_package(&work, &pkg) {
        // Stale package lists name a file the archive no longer has: refresh them, resolve again, retry.
        if !is_root() {
            return Err(e);
        }
        println!("vm setup: {e}; refreshing the package lists and retrying");
        apt_update()?;
        (pkg, version) = resolve_kernel_package()?;
        package = format!("{pkg} {version}");
        download_package(&work, &pkg)?;
    }
    let deb = fs::read_dir(&work)
        .map_err(|e| format!("read {}: {e}", work.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download {pkg} left no .deb in {}", work.display()))?;
    let tree = work.join("tree");
    run_checked(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&tree)
            .stdin(Stdio::null()),
        &format!("dpkg-deb -x {}", deb.display()),
    )?;
    // The release is the one directory under (usr/)lib/modules: no parsing of the package name.
    let mut releases = Vec::new();
    for base in ["lib/modules", "usr/lib/modules"] {
        if let Ok(dir) = fs::read_dir(tree.join(base)) {
            for e in dir.flatten() {
                if e.path().join("kernel").is_dir() {
                    releases.push((e.file_name().to_string_lossy().into_owned(), e.path()));
                }
            }
        }
    }
    let (release, modules_dir) = match releases.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(format!(
                "{}: no lib/modules/<release>/kernel in the package",
                deb.display()
            ));
        }
        many => {
            return Err(format!(
                "{}: several kernel releases in the package: {:?}",
                deb.display(),
                many.iter().map(|r| &r.0).collect::<Vec<_>>()
            ));
        }
    };
    let vmlinuz = tree.join(format!("boot/vmlinuz-{release}"));
    if !vmlinuz.is_file() {
        return Err(format!("{}: no boot/vmlinuz-{release}", deb.display()));
    }
    let mut wanted: Vec<&str> = BOOT_MODULES.iter().map(|(m, _)| *m).collect();
    wanted.extend_from_slice(ON_DEMAND_MODULES);
    let index = index_modules(&modules_dir)?;
    let set = resolve_modules(&index, &wanted)?;

    let _ = fs::remove_dir_all(&kdir);
    let mdir = kdir.join("modules");
    fs::create_dir_all(&mdir).map_err(|e| format!("create {}: {e}", mdir.display()))?;
    fs::copy(&vmlinuz, paths.kernel()).map_err(|e| format!("copy {}: {e}", vmlinuz.display()))?;
    for (name, data) in &set.files {
        let p = mdir.join(format!("{name}.ko"));
        fs::write(&p, data).map_err(|e| format!("write {}: {e}", p.display()))?;
    }
    let mut order_text = String::new();
    for (name, order) in &set.order {
        order_text.push_str(&format!("{name}: {}\n", order.join(" ")));
    }
    fs::write(kdir.join("load-order"), order_text).map_err(|e| format!("write load-order: {e}"))?;
    fs::write(kdir.join("package"), format!("{package}\n{release}\n"))
        .map_err(|e| format!("write {}: {e}", kdir.join("package").display()))?;
    let _ = fs::remove_dir_all(&work);
    println!(
        "vm setup: guest kernel {release} unpacked ({} modules: {})",
        set.files.len(),
        set.files.keys().cloned().collect::<Vec<_>>().join(" ")
    );
    Ok(KernelInfo { release, package })
}

/// Whether the unpacked kernel has every boot and on-demand module (the lists can grow after
/// the kernel was unpacked): `load-order` has a line per module unpacked.
fn modules_unpacked(kdir: &Path) -> bool {
    let Ok(order) = fs::read_to_string(kdir.join("load-order")) else {
        return false;
    };
    BOOT_MODULES
        .iter()
        .map(|(m, _)| *m)
        .chain(ON_DEMAND_MODULES.iter().copied())
        .all(|m| {
            order
                .lines()
                .any(|l| l.strip_prefix(m).is_some_and(|r| r.starts_with(':')))
        })
}

/// Everything the initramfs content depends on, so a change triggers a rebuild.
fn initramfs_stamp(kernel: &KernelInfo) -> String {
    let busybox = fs::metadata("/bin/busybox")
        .map(|m| format!("{} {:?}", m.len(), m.modified().ok()))
        .unwrap_or_default();
    format!(
        "kernel {}\nboot {:?}\non-demand {:?}\nbusybox {busybox}\ninit {:016x}\n",
        kernel.package,
        BOOT_MODULES,
        ON_DEMAND_MODULES,
        fnv1a(INIT_SCRIPT.as_bytes())
    )
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Builds target/testvm/initramfs.cpio if its stamp differs. Returns whether it was rebuilt.
fn ensure_initramfs(paths: &Paths, kernel: &KernelInfo) -> Result<bool, String> {
    let stamp_path = paths.testvm.join("initramfs.stamp");
    let stamp = initramfs_stamp(kernel);
    if paths.initramfs().is_file() && fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
    {
        println!("vm setup: initramfs up to date");
        return Ok(false);
    }
    if !is_static_elf(Path::new("/bin/busybox"))? {
        return Err(
            "/bin/busybox is not static: run `cargo xtask vm setup` (installs busybox-static)".into(),
        );
    }
    let kdir = paths.testvm.join("kernel");
    let order_text = fs::read_to_string(kdir.join("load-order")).map_err(|e| {
        format!(
            "read {}: {e}: run `cargo xtask vm setup`",
            kdir.join("load-order").display()
        )
    })?;
    let order: BTreeMap<&str, &str> = order_text.lines().filter_map(|l| l.split_once(": ")).collect();

    // Per-process names: two harness runs may rebuild at once; the final rename is atomic.
    let stage = paths.testvm.join(format!("initramfs.d.{}", std::process::id()));
    let _ = fs::remove_dir_all(&stage);
    let mk = |p: &Path| fs::create_dir_all(p).map_err(|e| format!("create {}: {e}", p.display()));
    for d in [
        "bin",
        "lib/modules",
        "etc/oxpmd/modules",
        "proc",
        "sys",
        "dev",
        "host",
        "tmp",
    ] {
        mk(&stage.join(d))?;
    }
    fs::copy("/bin/busybox", stage.join("bin/busybox")).map_err(|e| format!("copy /bin/busybox: {e}"))?;
    let init = stage.join("init");
    fs::write(&init, INIT_SCRIPT).map_err(|e| format!("write {}: {e}", init.display()))?;
    set_mode(&init, 0o755)?;
    for (name, list) in &order {
        let src = kdir.join("modules").join(format!("{name}.ko"));
        let dst = stage.join("lib/modules").join(format!("{name}.ko"));
        fs::copy(&src, &dst).map_err(|e| format!("copy {}: {e}", src.display()))?;
        fs::write(stage.join("etc/oxpmd/modules").join(name), format!("{list}\n"))
            .map_err(|e| format!("write module list {name}: {e}"))?;
    }
    let mut boot = String::new();
    for (name, params) in BOOT_MODULES {
        if !order.contains_key(name) {
            return Err(format!(
                "boot module {name} missing from the guest kernel: run `cargo xtask vm setup`"
            ));
        }
        boot.push_str(&format!("{name} {params}\n"));
    }
    fs::write(stage.join("etc/oxpmd/boot-modules"), boot).map_err(|e| format!("write boot-modules: {e}"))?;

    // Pack with cpio (newc), file list sorted for a reproducible archive.
    let list = Command::new("find")
        .arg(".")
        .current_dir(&stage)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("find in {}: {e}", stage.display()))?;
    let mut names: Vec<&str> = std::str::from_utf8(&list.stdout)
        .map_err(|_| "non-UTF-8 file name in the initramfs stage".to_string())?
        .lines()
        .collect();
    names.sort_unstable();
    let tmp = paths
        .testvm
        .join(format!("initramfs.cpio.{}.tmp", std::process::id()));
    let out = fs::File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    let mut child = Command::new("cpio")
        .args(["--quiet", "-o", "-H", "newc", "--reproducible"])
        .current_dir(&stage)
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .map_err(|e| format!("cpio: {e}: run `cargo xtask vm setup` (installs cpio)"))?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().ok_or("cpio: no stdin")?;
        stdin
            .write_all((names.join("\n") + "\n").as_bytes())
            .map_err(|e| format!("cpio: write file list: {e}"))?;
    }
    let status = child.wait().map_err(|e| format!("cpio: {e}"))?;
    if !status.success() {
        return Err(format!("cpio failed ({status})"));
    }
    fs::rename(&tmp, paths.initramfs()).map_err(|e| format!("rename {}: {e}", tmp.display()))?;
    fs::write(&stamp_path, stamp).map_err(|e| format!("write {}: {e}", stamp_path.display()))?;
    let _ = fs::remove_dir_all(&stage);
    let size = fs::metadata(paths.initramfs()).map(|m| m.len()).unwrap_or(0);
    println!(
        "vm setup: initramfs built ({:.1} MiB, kernel {}, boot modules: {})",
        size as f64 / 1048576.0,
        kernel.release,
        BOOT_MODULES.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(" ")
    );
    Ok(true)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_version_parses() {
        assert_eq!(
            parse_qemu_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)\n"),
            Some((10, 0))
        );
        assert_eq!(parse_qemu_version("QEMU emulator version 7.2.15"), Some((7, 2)));
        assert_eq!(parse_qemu_version("garbage"), None);
        assert!(Some((7, 2)) < Some(QEMU_MIN) && Some((8, 1)) >= Some(QEMU_MIN));
    }

    #[test]
    fn kernel_package_is_the_versioned_one() {
        let text = "linux-image-6.12-amd64\n  Depends: linux-image-6.12.117+deb12-amd64\n";
        assert_eq!(
            kernel_package_from_depends(text).as_deref(),
            Some("linux-image-6.12.117+deb12-amd64")
        );
        let alt =
            "linux-image-6.12-amd64\n |Depends: linux-image-6.12.9-amd64\n  Depends: <linux-image-6.12.8>\n";
        assert_eq!(
            kernel_package_from_depends(alt).as_deref(),
            Some("linux-image-6.12.9-amd64")
        );
        assert_eq!(kernel_package_from_depends("linux-image-6.12-amd64\n"), None);
        let other = "linux-image-amd64\n  Depends: linux-image-6.1.0-40-amd64\n";
        assert_eq!(kernel_package_from_depends(other), None, "only the 6.12 series");
    }

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

    #[test]
    fn sources_give_the_debian_uri() {
        let deb822 = "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n\n\
                      Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            uri_from_source(true, deb822, "bookworm").as_deref(),
            Some("http://mirror.invalid/debian")
        );
        assert_eq!(uri_from_source(true, deb822, "trixie"), None);
        let list =
            "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm main\n";
        assert_eq!(
            uri_from_source(false, list, "bookworm").as_deref(),
            Some("http://mirror.invalid/debian")
        );
        assert_eq!(
            uri_from_source(false, "deb-src http://m.invalid/d bookworm main", "bookworm"),
            None
        );
    }
}
