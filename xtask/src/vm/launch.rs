//! What a run of the test VM is made of before QEMU starts: its run directory, the guest's
//! command script (environment, working directory, command) and QEMU's command line.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::console::KERNEL_CONSOLE_FILE;
use super::topology::Topology;
use super::{GuestOptions, Machine, Paths};

/// PCI slot of the read-only 9p share of the workspace (mounted at its host path: a workspace under
/// /tmp or /run would otherwise be hidden by the guest's tmpfs mounts there).
pub const WORKSPACE_SHARE_SLOT: u8 = 0x03;
/// PCI slot of the read-only 9p share of the host root.
pub const ROOT_SHARE_SLOT: u8 = 0x04;
/// PCI slot of the writable 9p share of the run directory.
pub const RUN_SHARE_SLOT: u8 = 0x05;
/// PCI slot of the writable 9p share given with `--results`.
pub const RESULTS_SHARE_SLOT: u8 = 0x07;

/// The file in the run directory where guest tests record run-time skips (crate `oxpmd-test-skip`).
pub const SKIPS_FILE: &str = "skipped-tests.txt";
/// Guest memory in MiB.
const MEMORY_MIB: u32 = 2048;
/// Host environment variables passed to the guest command (plus every `OXPMD_*` the host sets that the
/// topology does not define).
const PASS_ENV: &[&str] = &[
    "RUST_BACKTRACE",
    "RUST_LOG",
    "RUST_TEST_THREADS",
    "RUST_MIN_STACK",
    "LANG",
];

/// Single-quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

pub(super) fn unique_run_dir(paths: &Paths, label: &str) -> Result<(PathBuf, String), String> {
    let runs = paths.testvm.join("runs");
    fs::create_dir_all(&runs).map_err(|e| format!("create {}: {e}", runs.display()))?;
    prune_runs(&runs);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let nonce = format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff);
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = runs.join(format!("{safe}-{nonce}"));
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok((dir, nonce))
}

/// Removes run directories older than a day.
fn prune_runs(runs: &Path) {
    let Ok(entries) = fs::read_dir(runs) else { return };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(24 * 3600));
        if old {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Writes the guest script: a clean environment, the topology variables, the working directory, the command.
pub(super) fn write_cmd_script(
    dir: &Path,
    topology: &Topology,
    cmd: &[String],
    opts: &GuestOptions,
) -> Result<(), String> {
    let cwd = match &opts.cwd {
        Some(c) => c.clone(),
        None => std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
    };
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ),
        ("HOME".into(), "/tmp".into()),
        ("USER".into(), "root".into()),
        ("TERM".into(), "dumb".into()),
        ("OXPMD_VM_MODPROBE".into(), "/run/oxpmd-vm/modprobe".into()),
        ("OXPMD_VM_RUN_DIR".into(), dir.display().to_string()),
        // Tests that skip at run time record it here (the host's own skips file is not writable
        // in the guest); `vm test` settles the records after the run.
        (
            crate::skips::SKIPS_FILE_ENV.into(),
            dir.join(SKIPS_FILE).display().to_string(),
        ),
    ];
    if let Some(r) = &opts.results {
        env.push(("OXPMD_VM_RESULTS".into(), r.display().to_string()));
    }
    // HOME is a tmpfs in the guest; the Rust toolchain stays reachable (read-only) where the host has it.
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        for (key, default) in [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")] {
            let dir = std::env::var_os(key)
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(default));
            if dir.is_dir() {
                env.push((key.into(), dir.display().to_string()));
            }
        }
    }
    let topo_env = topology.env();
    for key in PASS_ENV {
        if let Ok(v) = std::env::var(key) {
            env.push(((*key).into(), v));
        }
    }
    for (k, v) in std::env::vars() {
        if k.starts_with("OXPMD_")
            && !topo_env.iter().any(|(t, _)| *t == k)
            && !env.iter().any(|(e, _)| *e == k)
        {
            env.push((k, v));
        }
    }
    env.extend(topo_env);
    env.extend(opts.env.iter().cloned());
    let mut s = String::from("# written by cargo xtask vm: the command run in the test VM\n");
    for (k, v) in &env {
        if !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || k.is_empty() {
            return Err(format!("invalid environment variable name {k:?}"));
        }
        s.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    s.push_str(&format!(
        "cd {} || {{ echo \"oxpmd-vm: cannot enter {}\"; exit 125; }}\n",
        shell_quote(&cwd.display().to_string()),
        cwd.display()
    ));
    if opts.shell {
        let script = cmd.join(" ");
        s.push_str(&format!("exec /bin/sh -c {}\n", shell_quote(&script)));
    } else {
        let words: Vec<String> = cmd.iter().map(|w| shell_quote(w)).collect();
        s.push_str(&format!("exec {}\n", words.join(" ")));
    }
    let path = dir.join("cmd.sh");
    fs::write(&path, s).map_err(|e| format!("write {}: {e}", path.display()))
}

/// QEMU's command line for one run.
pub(super) fn qemu_args(
    paths: &Paths,
    topology: &Topology,
    run_dir: &Path,
    nonce: &str,
    results: Option<&Path>,
    machine: &Machine,
    taps: Option<[&str; 2]>,
) -> Vec<String> {
    // no_timer_check: under TCG on a loaded host the kernel's boot-time check that the timer
    // interrupt arrives through the IO-APIC can miss it, and with interrupt remapping (the
    // emulated IOMMU) that panics the boot ("timer doesn't work through Interrupt-remapped
    // IO-APIC", seen in CI and in a VM test run); the timer works, the check is what is
    // unreliable in an emulated guest.
    // init_on_alloc=0: Debian's kernel zeroes every page it allocates (heap alloc:on), so the
    // init's 256 hugepages (512 MiB) were zeroed at reservation, 2.3 s of each boot under TCG
    // (0.2 s without); hugetlbfs zeroes a page again when it is first mapped, so nothing of an
    // earlier owner is ever seen either way.
    let mut append = format!(
        "console=ttyS0 intel_iommu=on no_timer_check init_on_alloc=0 panic=-1 quiet oxpmd.run={} oxpmd.workspace={} \
         oxpmd.nonce={nonce} oxpmd.msize=512000",
        run_dir.display(),
        paths.workspace.display()
    );
    if let Some(r) = results {
        append.push_str(&format!(" oxpmd.results={}", r.display()));
    }
    if let Some(cs) = &machine.clocksource {
        append.push_str(&format!(" clocksource={cs}"));
    }
    if let Some(more) = &machine.append {
        append.push(' ');
        append.push_str(more);
    }
    let release = topology.ports_to_release();
    if !release.is_empty() {
        append.push_str(&format!(" oxpmd.release={}", release.join(",")));
    }
    let mut a: Vec<String> = [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-M",
        "q35",
        "-no-reboot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend([
        "-accel".into(),
        format!("tcg,thread={}", machine.tcg_thread),
        "-cpu".into(),
        machine.cpu.clone(),
        "-m".into(),
        MEMORY_MIB.to_string(),
        "-smp".into(),
        machine.cpus.to_string(),
    ]);
    if let Some(ic) = &machine.icount {
        a.extend(["-icount".into(), ic.clone()]);
    }
    a.extend(["-device".into(), "intel-iommu,intremap=on,caching-mode=on".into()]);
    // No 64-bit PCI hole: the guest then places every BAR below 4 GiB. QEMU 10.0.2's igb truncates
    // VF BAR addresses above 4 GiB to their low 32 bits, so VF registers would read 0
    // (docs/sriov.md).
    a.extend(["-global".into(), "q35-pcihost.pci-hole64-size=0".into()]);
    // Two serial ports, so that the kernel's messages never land inside a line of the command's:
    // the first (ttyS0) is the kernel console, written to a file the host follows; the second
    // (ttyS1) carries only what init and the command write, on QEMU's stdout. On one port a
    // kernel message could split the start or exit marker, and a run that did its work was lost.
    a.extend([
        "-chardev".into(),
        format!(
            "file,id=kernel,path={}",
            run_dir.join(KERNEL_CONSOLE_FILE).display()
        ),
    ]);
    a.extend(["-serial".into(), "chardev:kernel".into()]);
    a.extend(["-chardev".into(), "stdio,id=console,signal=off".into()]);
    a.extend(["-serial".into(), "chardev:console".into()]);
    a.extend(["-kernel".into(), paths.kernel().display().to_string()]);
    a.extend(["-initrd".into(), paths.initramfs().display().to_string()]);
    a.extend(["-append".into(), append]);
    a.extend([
        "-fsdev".into(),
        "local,id=hostroot,path=/,security_model=none,readonly=on".into(),
        "-device".into(),
        format!("virtio-9p-pci,fsdev=hostroot,mount_tag=host,addr={ROOT_SHARE_SLOT:02x}.0"),
    ]);
    a.extend([
        "-fsdev".into(),
        format!(
            "local,id=workspace,path={},security_model=none,readonly=on",
            paths.workspace.display()
        ),
        "-device".into(),
        format!("virtio-9p-pci,fsdev=workspace,mount_tag=workspace,addr={WORKSPACE_SHARE_SLOT:02x}.0"),
    ]);
    a.extend([
        "-fsdev".into(),
        format!("local,id=run,path={},security_model=none", run_dir.display()),
        "-device".into(),
        format!("virtio-9p-pci,fsdev=run,mount_tag=run,addr={RUN_SHARE_SLOT:02x}.0"),
    ]);
    if let Some(r) = results {
        a.extend([
            "-fsdev".into(),
            format!("local,id=results,path={},security_model=none", r.display()),
            "-device".into(),
            format!("virtio-9p-pci,fsdev=results,mount_tag=results,addr={RESULTS_SHARE_SLOT:02x}.0"),
        ]);
    }
    a.extend(topology.qemu_args(taps));
    a.extend(super::qmp::qemu_args(&super::qmp::socket_path(run_dir, nonce)));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
