//! The initramfs: busybox, the init script, the module set, rebuilt when anything it holds changes.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use super::super::Paths;
use super::kernel::KernelInfo;
use super::modules::{BOOT_MODULES, ON_DEMAND_MODULES};
use super::packages::is_static_elf;

/// The init script of the initramfs.
pub(super) const INIT_SCRIPT: &str = include_str!("../init.sh");

/// Everything the initramfs content depends on, so a change triggers a rebuild.
pub(super) fn initramfs_stamp(kernel: &KernelInfo) -> String {
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

pub(super) fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Builds target/testvm/initramfs.cpio if its stamp differs. Returns whether it was rebuilt.
pub(super) fn ensure_initramfs(paths: &Paths, kernel: &KernelInfo) -> Result<bool, String> {
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

pub(super) fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}
