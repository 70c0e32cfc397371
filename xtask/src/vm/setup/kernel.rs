//! The guest kernel: the current Debian 6.12 package, downloaded and unpacked under target/testvm/.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use super::super::{Paths, run_checked};
use super::is_root;
use super::modules::{BOOT_MODULES, ON_DEMAND_MODULES, index_modules, resolve_modules};
use super::packages::{apt_env, apt_update, codename};

/// The Debian meta package naming the current 6.12 kernel.
pub(super) const KERNEL_META: &str = "linux-image-6.12-amd64";
/// Fallback meta package, accepted only while it points at a 6.12 kernel (e.g. on Debian 13).
pub(super) const KERNEL_META_FALLBACK: &str = "linux-image-amd64";
/// The kernel series the harness is written for (module set, VFIO behaviour).
pub(super) const KERNEL_SERIES: &str = "linux-image-6.12.";
/// The guest kernel: release string and where its pieces are.
pub struct KernelInfo {
    /// `uname -r` of the guest, e.g. `6.12.117+deb12-amd64`.
    pub release: String,
    /// Package name and version it came from.
    pub package: String,
}

pub(super) fn read_kernel_info(paths: &Paths) -> Result<KernelInfo, String> {
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
pub(super) fn kernel_package_from_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches('|');
            l.strip_prefix("Depends:").map(str::trim)
        })
        .find(|p| p.starts_with(KERNEL_SERIES) && p.ends_with("-amd64") && !p.contains('<'))
        .map(str::to_string)
}

pub(super) fn apt_candidate(pkg: &str) -> Option<String> {
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
pub(super) fn resolve_kernel_package() -> Result<(String, String), String> {
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

/// `apt-get download` of exactly `pkg` into `dir` (a glob would fetch every matching package).
pub(super) fn download_package(dir: &Path, pkg: &str) -> Result<(), String> {
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

/// Names the kernel packages to use instead of Debian's 6.12 one: comma-separated `.deb` files
/// unpacked into one tree (a newer Debian splits a kernel into `linux-binary-*` and
/// `linux-modules-*`). For trying another guest kernel in its own target directory, e.g. one
/// whose drivers have AF_XDP zero copy (docs/testvm.md); the suite is written for 6.12.
pub(super) const KERNEL_DEBS_ENV: &str = "OXPMD_VM_KERNEL_DEBS";

/// Downloads and unpacks the guest kernel if the cached one is not the current package.
pub(super) fn ensure_kernel(paths: &Paths, changed: &mut bool) -> Result<KernelInfo, String> {
    let local: Vec<std::path::PathBuf> = std::env::var(KERNEL_DEBS_ENV)
        .ok()
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(std::path::PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let (mut pkg, mut version) = if local.is_empty() {
        resolve_kernel_package()?
    } else {
        let names: Vec<String> = local
            .iter()
            .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
            .collect();
        (format!("local {}", names.join(",")), String::from("(given)"))
    };
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
    for deb in &local {
        let to = work.join(deb.file_name().unwrap_or_default());
        fs::copy(deb, &to).map_err(|e| format!("{KERNEL_DEBS_ENV}: copy {}: {e}", deb.display()))?;
    }
    if !local.is_empty() {
        println!("vm setup: guest kernel from {KERNEL_DEBS_ENV}: {pkg}");
    } else {
        println!("vm setup: downloading {pkg} {version}");
    }
    if local.is_empty()
        && let Err(e) = download_package(&work, &pkg)
    {
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
    let debs: Vec<std::path::PathBuf> = fs::read_dir(&work)
        .map_err(|e| format!("read {}: {e}", work.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    let deb = debs
        .first()
        .cloned()
        .ok_or_else(|| format!("apt-get download {pkg} left no .deb in {}", work.display()))?;
    let tree = work.join("tree");
    for d in &debs {
        run_checked(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(d)
                .arg(&tree)
                .stdin(Stdio::null()),
            &format!("dpkg-deb -x {}", d.display()),
        )?;
    }
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
    // Debian 12 ships the image in /boot; later releases beside the modules.
    let vmlinuz = [
        tree.join(format!("boot/vmlinuz-{release}")),
        modules_dir.join("vmlinuz"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| {
        format!(
            "{}: no boot/vmlinuz-{release} nor lib/modules/{release}/vmlinuz",
            deb.display()
        )
    })?;
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
pub(super) fn modules_unpacked(kdir: &Path) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
