//! The VM side of `bench rfc2544-vm`: one boot of the `quad` topology, each DUT in turn forwarding
//! between the DUT ports (crate::dut) while the same `pktgen --rfc2544` sweeps through it from the
//! generator ports and writes its JSON result into the output directory, shared writable with the
//! guest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::options::VmOpts;
use super::result::Sweep;
use crate::dut::{BenchPorts, Dut, WAIT_FOR_SH, build_examples};
use crate::vm::{GuestOptions, Paths, Topology, run_in_guest, shell_quote};

/// The topology of the bench: pktgen 0 <-> DUT 2, pktgen 1 <-> DUT 3.
const TOPOLOGY: &str = "quad";

/// The result file of `dut` in `out`.
pub(crate) fn result_path(out: &Path, dut: Dut) -> PathBuf {
    out.join(format!("{}.json", dut.name()))
}

/// The pktgen command line of the sweep through `dut`.
fn pktgen_command(o: &VmOpts, ports: &BenchPorts, out: &Path, dut: Dut) -> String {
    let sizes: Vec<String> = o.sizes.iter().map(u32::to_string).collect();
    let mut cmd = format!(
        "{} --rfc2544 --sizes {} --trial {}",
        ports.pktgen_command(),
        sizes.join(","),
        o.trial
    );
    for (name, v) in [
        ("--loss-tolerance", o.loss_tolerance),
        ("--resolution", o.resolution),
        ("--latency-fraction", o.latency_fraction),
        ("--max-rate", o.max_rate),
    ] {
        if let Some(v) = v {
            cmd.push_str(&format!(" {name} {v}"));
        }
    }
    let json = result_path(out, dut);
    cmd.push_str(&format!(" --json {}", shell_quote(&json.to_string_lossy())));
    cmd
}

/// The guest script: each DUT between `=== NAME` markers, pktgen's exit code after its run.
fn guest_script(o: &VmOpts, ports: &BenchPorts, out: &Path) -> String {
    let mut s = format!(
        "set -u\n{WAIT_FOR_SH}echo \"rfc2544: pktgen {} -> DUT {} => DUT {} -> pktgen {}\"\n",
        ports.gen_tx, ports.dut[0], ports.dut[1], ports.gen_rx
    );
    for &dut in &o.duts {
        let traffic = format!("{}\necho \"pktgen exit $?\"", pktgen_command(o, ports, out, dut));
        s.push_str(&format!("echo \"=== {}\"\n", dut.name()));
        s.push_str(&dut.session_sh(ports, &traffic));
    }
    s.push_str("echo \"=== end\"\n");
    s
}

/// A generous bound of the guest's run: per DUT and size, the search's trials (about log2 of
/// 100 / resolution, plus the first at the maximum and the latency trial), each a trial and
/// pktgen's 1 s drain plus set-up; plus the DUT's start and the boot. TCG makes all of it slow.
fn timeout(o: &VmOpts) -> Duration {
    let trials = (100.0 / o.resolution.unwrap_or(1.0)).log2().ceil().max(1.0) + 3.0;
    let per_size = trials * (o.trial + 3.0);
    let per_dut = per_size * o.sizes.len() as f64 + 180.0;
    Duration::from_secs_f64(1.5 * per_dut * o.duts.len() as f64 + 300.0)
}

/// Runs the sweeps; each DUT's result (`None` when its run wrote none, said on stderr), in the
/// order of `o.duts`.
pub(crate) fn run(o: &VmOpts, out: &Path) -> Result<Vec<(Dut, Option<Sweep>)>, String> {
    let paths = Paths::new();
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    // The guest mounts the directory at the same path: it must be absolute.
    let out = out
        .canonicalize()
        .map_err(|e| format!("{}: {e}", out.display()))?;
    for &dut in &o.duts {
        let p = result_path(&out, dut);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| format!("remove the old {}: {e}", p.display()))?;
        }
    }
    if o.build {
        build_examples(&paths.workspace)?;
    }
    let ports = BenchPorts::by_role(&Topology::by_name(TOPOLOGY)?)?;
    println!(
        "bench rfc2544-vm: {TOPOLOGY} topology; guest commands (in {}):",
        paths.workspace.display()
    );
    for &dut in &o.duts {
        println!("  DUT {}: {}", dut.name(), dut.command(&ports));
        println!(
            "  pktgen through {}: {}",
            dut.name(),
            pktgen_command(o, &ports, &out, dut)
        );
    }
    let opts = GuestOptions {
        timeout: timeout(o),
        results: Some(out.clone()),
        cwd: Some(paths.workspace.clone()),
        echo: true,
        shell: true,
        label: "bench-rfc2544-vm".into(),
        ..GuestOptions::default()
    };
    let run = run_in_guest(TOPOLOGY, &[guest_script(o, &ports, &out)], &opts)?;
    println!(
        "\nbench rfc2544-vm: boot to command {:.1} s, total {:.1} s, logs in {}",
        run.boot_to_command.as_secs_f64(),
        run.total.as_secs_f64(),
        run.run_dir.display()
    );
    if run.exit_code != 0 {
        eprintln!("bench rfc2544-vm: the guest script exited with {}", run.exit_code);
    }
    Ok(o.duts
        .iter()
        .map(|&dut| {
            let sweep = Sweep::read(&result_path(&out, dut))
                .map_err(|e| eprintln!("bench rfc2544-vm: no result of {}: {e}", dut.program()))
                .ok();
            (dut, sweep)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::options::parse_vm;
    use super::*;

    fn ports() -> BenchPorts {
        BenchPorts::by_role(&Topology::by_name(TOPOLOGY).unwrap()).unwrap()
    }

    #[test]
    fn pktgen_gets_the_options_given() {
        let o = parse_vm(&[]).unwrap();
        let c = pktgen_command(&o, &ports(), Path::new("/o"), Dut::Ours);
        assert!(
            c.starts_with("target/release/examples/pktgen --tx-port 0000:00:02.0 --rx-port 0000:00:06.0")
        );
        assert!(c.ends_with(
            "--rfc2544 --sizes 64,128,256,512,1024,1280,1518 --trial 2 --loss-tolerance 0.5 --max-rate 100000 \
             --json '/o/ours.json'"
        ));
        let a: Vec<String> = [
            "--sizes",
            "64",
            "--trial",
            "0.5",
            "--loss-tolerance",
            "0.1",
            "--max-rate",
            "50000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = pktgen_command(&parse_vm(&a).unwrap(), &ports(), Path::new("/o"), Dut::Dpdk);
        assert!(
            c.contains("--sizes 64 --trial 0.5 --loss-tolerance 0.1 --max-rate 50000 --json '/o/dpdk.json'")
        );
    }

    #[test]
    fn the_script_runs_each_dut_in_turn() {
        let o = parse_vm(&[]).unwrap();
        let s = guest_script(&o, &ports(), Path::new("/o"));
        let ours = s.find("=== ours\"\ntarget/release/examples/l2fwd").unwrap();
        let dpdk = s.find("=== dpdk\"\ndpdk-testpmd").unwrap();
        assert!(ours < dpdk && s.ends_with("=== end\"\n"));
        assert_eq!(s.matches("--json").count(), 2);
        assert_eq!(s.matches("kill -INT $pid").count(), 2);
        let one = parse_vm(&["--duts".to_string(), "dpdk".to_string()]).unwrap();
        let s = guest_script(&one, &ports(), Path::new("/o"));
        assert!(!s.contains("l2fwd --port") && s.contains("dpdk-testpmd"));
        // 7 sizes, 2 s trials: minutes, not seconds nor days.
        let t = timeout(&o).as_secs();
        assert!((600..7200).contains(&t), "{t}");
    }
}
