//! `cargo xtask vm test`: builds the workspace's `vm_*` integration tests and runs each binary in its own VM.
//!
//! Convention (docs/testvm.md): a VM test is an integration test file `tests/vm_*.rs` whose tests are all
//! `#[ignore = "needs the test VM: cargo xtask vm test"]`; its first lines may declare the topology with
//! `//! vm-topology: NAME` (default `pair`). Each binary runs with `--ignored --test-threads=1`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use super::topology::Topology;
use super::{Args, GuestOptions, Paths, guest, launch, parse_secs, setup, split_eq};
use crate::skips::{PassedTests, Skips};

/// The default topology of a VM test file.
const DEFAULT_TOPOLOGY: &str = "pair";

/// One VM test binary.
#[derive(Debug)]
struct VmTestBinary {
    /// Target name, e.g. `vm_harness`.
    name: String,
    /// Package that owns it.
    package: String,
    /// The built executable.
    executable: PathBuf,
    /// Its source file.
    src_path: PathBuf,
    /// The package directory (cargo runs tests there).
    package_dir: PathBuf,
}

/// Reads `//! vm-topology: NAME` from the first 40 lines of a test file.
fn declared_topology(src: &str) -> Option<String> {
    src.lines().take(40).find_map(|l| {
        let l = l.trim_start();
        let rest = l.strip_prefix("//!").or_else(|| l.strip_prefix("//"))?;
        let value = rest.trim().strip_prefix("vm-topology:")?;
        Some(value.trim().to_string())
    })
}

/// Picks the `vm_*` test executables from `cargo test --no-run --message-format=json` output.
fn parse_cargo_messages(text: &str) -> Result<Vec<VmTestBinary>, String> {
    let mut found = Vec::new();
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("cargo message is not JSON ({e}): {line}"))?;
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        let target = &v["target"];
        let is_test = target["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        let name = target["name"].as_str().unwrap_or_default();
        let (Some(exe), Some(src), Some(manifest)) = (
            v["executable"].as_str(),
            target["src_path"].as_str(),
            v["manifest_path"].as_str(),
        ) else {
            continue;
        };
        if !is_test || !name.starts_with("vm_") {
            continue;
        }
        let package = v["package_id"].as_str().unwrap_or_default();
        // package_id is "path+file:///dir#name@version" (or an older "name version (...)" form).
        let package = package
            .rsplit_once('#')
            .map(|(_, t)| t.split('@').next().unwrap_or(t))
            .or_else(|| package.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        found.push(VmTestBinary {
            name: name.to_string(),
            package,
            executable: PathBuf::from(exe),
            src_path: PathBuf::from(src),
            package_dir: Path::new(manifest)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        });
    }
    found.sort_by(|a, b| (&a.package, &a.name).cmp(&(&b.package, &b.name)));
    found.dedup_by(|a, b| a.executable == b.executable);
    Ok(found)
}

/// Counts from libtest's `test result: ok. N passed; M failed; ...` lines.
fn libtest_counts(output: &str) -> Option<(u32, u32)> {
    let mut total: Option<(u32, u32)> = None;
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        let num = |word: &str| {
            rest.split(';')
                .find_map(|part| part.trim().strip_suffix(word).map(str::trim))
                .map(|n| n.rsplit(' ').next().unwrap_or(n))
                .and_then(|n| n.parse::<u32>().ok())
        };
        let (p, f) = (num("passed")?, num("failed")?);
        let t = total.get_or_insert((0, 0));
        t.0 += p;
        t.1 += f;
    }
    total
}

/// FILTER first selects binaries by name (`vm_sriov`: all of that binary's tests); when no binary name
/// contains it, it is libtest's test-name filter for every binary.
fn select(binaries: Vec<VmTestBinary>, filter: Option<&str>) -> (Vec<VmTestBinary>, Option<&str>) {
    match filter {
        Some(f) if binaries.iter().any(|b| b.name.contains(f)) => (
            binaries.into_iter().filter(|b| b.name.contains(f)).collect(),
            None,
        ),
        other => (binaries, other),
    }
}

/// The ignored tests of a binary that match the filter, listed on the host (nothing runs).
fn list_tests(bin: &VmTestBinary, filter: Option<&str>) -> Result<Vec<String>, String> {
    let mut cmd = Command::new(&bin.executable);
    cmd.args(["--list", "--ignored", "--format", "terse"]);
    if let Some(f) = filter {
        cmd.arg(f);
    }
    let out = cmd
        .current_dir(&bin.package_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} --list: {e}", bin.executable.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} --list failed: {}",
            bin.executable.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect())
}

/// The command of a rerun after a frozen or crashed attempt whose `output` shows tests passed:
/// `cmd` with a `--skip NAME` for each, so the fresh VM takes up where the last one stopped (each
/// test of a binary runs on its own too: `vm test FILTER`). libtest's `--skip` matches
/// substrings, so a test whose name is inside another listed test's name is run again rather
/// than skipped with it. `None` when nothing passed.
fn resume_after_passed(cmd: &[String], output: &str, listed: &[String]) -> Option<(Vec<String>, String)> {
    let mut passed = PassedTests::default();
    passed.add_text(output);
    let mut skip: Vec<&str> = passed
        .names()
        .filter(|n| !listed.iter().any(|o| o != n && o.contains(n)))
        .collect();
    if skip.is_empty() {
        return None;
    }
    skip.sort_unstable();
    let mut next = cmd.to_vec();
    for n in &skip {
        next.extend(["--skip".to_string(), (*n).to_string()]);
    }
    Some((
        next,
        format!(
            "skipping the {} test(s) that passed before that VM stopped",
            skip.len()
        ),
    ))
}

/// What one run of one VM test binary gave.
struct BinaryRun {
    status: &'static str,
    passed: u32,
    failed: u32,
    skipped: u32,
    boot: Option<Duration>,
    elapsed: Duration,
    /// Why a failed run failed (repeated after the summary, where a CI log's tail shows it).
    why: Option<String>,
}

/// Runs one VM test binary in a fresh VM and counts its tests.
fn run_binary(
    paths: &Paths,
    bin: &VmTestBinary,
    topo: &Topology,
    filter: Option<&str>,
    listed: &[String],
    timeout: Duration,
    verbose: bool,
) -> Result<BinaryRun, String> {
    let mut cmd = vec![
        bin.executable.display().to_string(),
        "--ignored".to_string(),
        "--test-threads=1".to_string(),
    ];
    if let Some(f) = filter {
        cmd.push(f.to_string());
    }
    let opts = GuestOptions {
        timeout,
        cwd: Some(bin.package_dir.clone()),
        echo: true,
        verbose,
        label: format!("test-{}", bin.name),
        ..GuestOptions::default()
    };
    let started = Instant::now();
    let mut why = None;
    let resume = |cmd: &[String], output: &str| resume_after_passed(cmd, output, listed);
    let (status, p, f, k, boot) = match guest::run_resuming(paths, topo, &cmd, &opts, &resume) {
        Ok((out, taken_up)) => {
            let counts = libtest_counts(&out.output);
            let (p, f) = match counts {
                Some((p, f)) if out.exit_code == 0 || f > 0 => (p, f),
                // A crash or a missing summary counts as one failure.
                Some((p, f)) => (p, f + 1),
                None => (0, 1),
            };
            // The tests a frozen attempt finished before a rerun took up after them.
            let mut p = p;
            let mut k = 0;
            for a in &taken_up {
                let mut passed_tests = PassedTests::default();
                passed_tests.add_text(&a.output);
                let n = passed_tests.total();
                let skips = Skips::settle_file(&a.run_dir.join(launch::SKIPS_FILE), &mut passed_tests)?;
                skips.print("vm test: ");
                let ka = u32::try_from(skips.counted.len()).unwrap_or(u32::MAX).min(n);
                p += n - ka;
                k += ka;
            }
            // Tests that passed but reported themselves skipped count as skipped.
            let mut passed_tests = PassedTests::default();
            passed_tests.add_text(&out.output);
            let skips = Skips::settle_file(&out.run_dir.join(launch::SKIPS_FILE), &mut passed_tests)?;
            skips.print("vm test: ");
            let kl = u32::try_from(skips.counted.len()).unwrap_or(u32::MAX).min(p);
            let (p, k) = (p - kl, k + kl);
            let status = if out.exit_code == 0 && f == 0 {
                "ok"
            } else {
                "FAILED"
            };
            if status != "ok" {
                let failing: Vec<&str> = out
                    .output
                    .lines()
                    .filter(|l| l.starts_with("test ") && l.ends_with("FAILED"))
                    .collect();
                let text = format!(
                    "exit code {}; {}logs in {}",
                    out.exit_code,
                    if failing.is_empty() {
                        String::new()
                    } else {
                        format!("{}; ", failing.join(", "))
                    },
                    out.run_dir.display()
                );
                println!("vm test: {}: {text}", bin.name);
                why = Some(text);
            }
            (status, p, f, k, Some(out.boot_to_command))
        }
        Err(e) => {
            println!("vm test: {}: {e}", bin.name);
            why = Some(e);
            ("ERROR", 0, 1, 0, None)
        }
    };
    Ok(BinaryRun {
        status,
        passed: p,
        failed: f,
        skipped: k,
        boot,
        elapsed: started.elapsed(),
        why,
    })
}

/// `cargo xtask vm test [--topology NAME] [-p PKG]... [--timeout SECS] [--repeat N] [FILTER]`.
pub fn cmd_test(rest: &[String]) -> Result<ExitCode, String> {
    let mut args = Args { rest };
    let mut topology_override: Option<String> = None;
    let mut packages: Vec<String> = Vec::new();
    let mut timeout = Duration::from_secs(900);
    let mut verbose = false;
    let mut repeat = 1u32;
    let mut positional: Vec<String> = Vec::new();
    // Options may come before or after FILTER (`vm test vm_harness -p oxpmd`).
    loop {
        if let Some(raw) = args.next_opt() {
            let (opt, inline) = split_eq(raw);
            match opt {
                "--topology" => topology_override = Some(args.value_or(opt, inline)?),
                "-p" | "--package" => packages.push(args.value_or(opt, inline)?),
                "--timeout" => timeout = parse_secs(opt, &args.value_or(opt, inline)?)?,
                "--verbose" | "-v" => verbose = true,
                "--repeat" => {
                    let v = args.value_or(opt, inline)?;
                    repeat = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| format!("--repeat: `{v}` is not a number of rounds in 1..=100"))?;
                }
                other => return Err(format!("unknown option {other}")),
            }
        } else if let Some((first, rest)) = args.rest.split_first() {
            if first == "--" {
                positional.extend(rest.iter().cloned());
                break;
            }
            positional.push(first.clone());
            args.rest = rest;
        } else {
            break;
        }
    }
    let filter = match positional.as_slice() {
        [] => None,
        [f] => Some(f.as_str()),
        more => return Err(format!("one FILTER at most, got {more:?}")),
    };
    if let Some(t) = &topology_override {
        Topology::by_name(t)?;
    }
    let all_start = Instant::now();
    let paths = Paths::new();
    setup::check_ready(&paths)?;

    println!("vm test: building the VM tests on the host");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args(["test", "--no-run", "--message-format=json"])
        .current_dir(&paths.workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if packages.is_empty() {
        cargo.arg("--workspace");
    }
    for p in &packages {
        cargo.args(["-p", p]);
    }
    let out = cargo.output().map_err(|e| format!("cargo test --no-run: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo test --no-run failed ({})", out.status));
    }
    let binaries = parse_cargo_messages(&String::from_utf8_lossy(&out.stdout))?;
    if binaries.is_empty() {
        return Err("no vm_* integration test found (convention: tests/vm_*.rs, see docs/testvm.md)".into());
    }
    let (binaries, filter) = select(binaries, filter);

    // Each binary with its topology and the number of its tests the filter selects.
    let mut selected = Vec::new();
    for bin in &binaries {
        let listed = list_tests(bin, filter)?;
        if listed.is_empty() {
            println!(
                "vm test: {} ({}): no test matches, skipped",
                bin.name, bin.package
            );
            continue;
        }
        let src =
            fs::read_to_string(&bin.src_path).map_err(|e| format!("read {}: {e}", bin.src_path.display()))?;
        let declared = declared_topology(&src);
        let topo_name = topology_override
            .clone()
            .or(declared)
            .unwrap_or_else(|| DEFAULT_TOPOLOGY.to_string());
        let topo = Topology::by_name(&topo_name).map_err(|e| format!("{}: {e}", bin.src_path.display()))?;
        selected.push((bin, topo, listed));
    }

    let mut passed = 0u32;
    let mut failed = 0u32;
    let mut skipped = 0u32;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    // Per binary: the rounds in which it failed.
    let mut failed_rounds: Vec<Vec<u32>> = vec![Vec::new(); selected.len()];
    for round in 1..=repeat {
        if repeat > 1 {
            println!("\n######## vm test: round {round} of {repeat} ########");
        }
        for (i, (bin, topo, listed)) in selected.iter().enumerate() {
            println!(
                "\n==== vm test: {} ({}), topology {}, {} test(s) ====",
                bin.name,
                bin.package,
                topo.name,
                listed.len()
            );
            print!("{}", topo.describe());
            // A topology the host cannot build (not root, no tap or bridge support): its tests
            // are skipped, not passed, with the reason.
            let cannot = match topo.host_link {
                Some(_) => super::host_link::HostLink::create(&format!("{:08x}", std::process::id())).err(),
                None => None,
            };
            if let Some(why) = cannot {
                println!(
                    "vm test: {}: SKIPPED {} test(s): topology {}: {why}",
                    bin.name,
                    listed.len(),
                    topo.name
                );
                skipped += u32::try_from(listed.len()).unwrap_or(u32::MAX);
                rows.push(format!(
                    "  {:<28} {:<8} {:<7} {:>3} passed {:>3} failed {:>3} skipped  ({why})",
                    bin.name,
                    topo.name,
                    "SKIPPED",
                    0,
                    0,
                    listed.len()
                ));
                continue;
            }
            let r = run_binary(&paths, bin, topo, filter, listed, timeout, verbose)?;
            passed += r.passed;
            failed += r.failed;
            skipped += r.skipped;
            if r.status != "ok" {
                failed_rounds[i].push(round);
            }
            if let Some(why) = &r.why {
                // The first lines are what tells; the logs hold the rest.
                let short: Vec<&str> = why.lines().take(12).collect();
                failures.push(format!(
                    "  {} (round {round}): {}",
                    bin.name,
                    short.join("\n    ")
                ));
            }
            rows.push(format!(
                "  {:<28} {:<8} {:<7} {:>3} passed {:>3} failed {:>3} skipped  boot-to-command {}  total {:.1} s{}",
                bin.name,
                topo.name,
                r.status,
                r.passed,
                r.failed,
                r.skipped,
                r.boot
                    .map(|b| format!("{:.1} s", b.as_secs_f64()))
                    .unwrap_or_else(|| "-".into()),
                r.elapsed.as_secs_f64(),
                if repeat > 1 {
                    format!("  (round {round})")
                } else {
                    String::new()
                }
            ));
        }
    }
    println!(
        "\nvm test summary ({:.1} min):",
        all_start.elapsed().as_secs_f64() / 60.0
    );
    for r in &rows {
        println!("{r}");
    }
    if repeat > 1 {
        println!("\nflakes over {repeat} rounds (rounds in which a binary failed):");
        for ((bin, _, _), rounds) in selected.iter().zip(&failed_rounds) {
            println!(
                "  {:<28} {} of {repeat} failed{}",
                bin.name,
                rounds.len(),
                if rounds.is_empty() {
                    String::new()
                } else {
                    format!(" (rounds {rounds:?})")
                }
            );
        }
    }
    if !failures.is_empty() {
        println!("\nwhat failed:");
        for f in &failures {
            println!("{f}");
        }
    }
    println!("vm tests: {passed} passed, {failed} failed, {skipped} skipped");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn topology_declaration() {
        assert_eq!(
            declared_topology("//! vm-topology: quad\n//! more\n").as_deref(),
            Some("quad")
        );
        assert_eq!(
            declared_topology("//! Smoke test.\n//!\n//! vm-topology:  virtio \n").as_deref(),
            Some("virtio")
        );
        assert_eq!(declared_topology("//! nothing here\nfn main() {}\n"), None);
    }

    #[test]
    fn filter_selects_binaries_then_tests() {
        let bin = |name: &str| VmTestBinary {
            name: name.into(),
            package: "p".into(),
            executable: PathBuf::from(name),
            src_path: PathBuf::new(),
            package_dir: PathBuf::new(),
        };
        let (b, f) = select(vec![bin("vm_harness"), bin("vm_sriov")], Some("sriov"));
        assert_eq!((b.len(), b[0].name.as_str(), f), (1, "vm_sriov", None));
        let (b, f) = select(vec![bin("vm_harness"), bin("vm_sriov")], Some("token"));
        assert_eq!((b.len(), f), (2, Some("token")));
        let (b, f) = select(vec![bin("vm_harness")], None);
        assert_eq!((b.len(), f), (1, None));
    }

    #[test]
    fn a_rerun_skips_what_passed_before_the_freeze() {
        let listed: Vec<String> = ["a_b", "a_b_c", "d", "e"].map(String::from).to_vec();
        let cmd: Vec<String> = ["bin", "--ignored"].map(String::from).to_vec();
        let out = "running 4 tests\ntest a_b ... ok\ntest a_b_c ... ok\ntest d ... FAILED\ntest e ... ";
        let (next, said) = resume_after_passed(&cmd, out, &listed).unwrap();
        // `a_b` is inside `a_b_c`: skipping it would skip both, so it runs again.
        assert_eq!(next, ["bin", "--ignored", "--skip", "a_b_c"]);
        assert_eq!(said, "skipping the 1 test(s) that passed before that VM stopped");
        // A second freeze adds to the skips of the first.
        let (again, _) = resume_after_passed(&next, "test e ... ok\n", &listed).unwrap();
        assert_eq!(again, ["bin", "--ignored", "--skip", "a_b_c", "--skip", "e"]);
        assert_eq!(
            resume_after_passed(&cmd, "running 4 tests\ntest d ... ", &listed),
            None
        );
    }

    #[test]
    fn libtest_summary_is_counted() {
        let out = "running 3 tests\ntest a ... ok\n\ntest result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 4 filtered out; finished in 0.01s\n";
        assert_eq!(libtest_counts(out), Some((2, 1)));
        assert_eq!(libtest_counts("no summary"), None);
    }

    #[test]
    fn cargo_messages_select_vm_tests() {
        let msgs = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/main#oxpmd@0.1.0","manifest_path":"/w/main/Cargo.toml","target":{"kind":["test"],"name":"vm_harness","src_path":"/w/main/tests/vm_harness.rs"},"executable":"/w/main/target/debug/deps/vm_harness-1"}
{"reason":"compiler-artifact","package_id":"path+file:///w/main#oxpmd@0.1.0","manifest_path":"/w/main/Cargo.toml","target":{"kind":["test"],"name":"ring","src_path":"/w/main/tests/ring.rs"},"executable":"/w/main/target/debug/deps/ring-1"}
{"reason":"compiler-artifact","package_id":"path+file:///w/main#oxpmd@0.1.0","manifest_path":"/w/main/Cargo.toml","target":{"kind":["lib"],"name":"vm_lib","src_path":"/w/main/src/lib.rs"},"executable":null}
{"reason":"build-finished","success":true}"#;
        let found = parse_cargo_messages(msgs).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "vm_harness");
        assert_eq!(found[0].package, "oxpmd");
        assert_eq!(found[0].package_dir, PathBuf::from("/w/main"));
    }
}
