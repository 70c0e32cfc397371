//! `cargo xtask bench l2fwd-vm`: our l2fwd against DPDK 22.11 `dpdk-testpmd` io forwarding on the
//! emulated 82576 NICs of the test VM (`quad` topology), one after the other in the same VM.
//!
//! The traffic is identical for both, from the same generator: our `pktgen` (release build) sends
//! 64-byte frames as fast as it can for `--duration` seconds from pktgen port A into DUT port 0;
//! the DUT forwards them to DUT port 1, which is linked to pktgen port B, where pktgen counts what
//! arrives. Each DUT forwards in io mode (no MAC rewrite: l2fwd `--no-mac-updating`, testpmd
//! `--forward-mode=io`) with bursts of 32 and 1024 RX / 1024 TX descriptors per port, one
//! forwarding core polling both ports: vCPU 1 (l2fwd `-q 2 --cores 1`, testpmd `-l 0,1` whose
//! forwarding lcore is 1); pktgen's TX and RX threads are pinned to vCPU 0 in both runs. The
//! frames are addressed to DUT port 0's MAC, so neither DUT needs promiscuous mode to accept them
//! (testpmd turns it on anyway; it costs nothing in QEMU's filter).
//!
//! The rate of a DUT is what pktgen received per second between the first and the last frame
//! received (the emulation, not the driver, sets its order of magnitude: compare the ratio only).
//! The last line is `ratio: X` (ours / DPDK).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use crate::vm::{GuestOptions, Paths, run_in_guest};

const USAGE: &str = "\
usage: cargo xtask bench l2fwd-vm [--duration SECS] [--runs N] [--size BYTES] [--no-build]

  our examples/l2fwd against dpdk-testpmd io forwarding between the DUT ports of the test VM's
  quad topology, both fed by examples/pktgen on the pktgen ports; prints both rates and
  `ratio: X` (ours / DPDK)

  --duration SECS   traffic time of each run (default 20)
  --runs N          alternate runs per side in the same VM, best kept (default 1)
  --size BYTES      frame size with FCS, 64..=1518 (default 64)
  --no-build        use the release examples already built";

#[derive(Debug, Clone, PartialEq)]
struct Opts {
    duration: u64,
    runs: u32,
    size: u32,
    build: bool,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        duration: 20,
        runs: 1,
        size: 64,
        build: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |what: &str, lo: u64, hi: u64| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{what}: missing value"))?;
            let n: u64 = v.parse().map_err(|_| format!("{what}: `{v}` is not a number"))?;
            if !(lo..=hi).contains(&n) {
                return Err(format!("{what}: {n} out of range {lo}..={hi}"));
            }
            Ok(n)
        };
        match a.as_str() {
            "--duration" => o.duration = num("--duration", 3, 3600)?,
            "--runs" => o.runs = num("--runs", 1, 10)? as u32,
            "--size" => o.size = num("--size", 64, 1518)? as u32,
            "--no-build" => o.build = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(o)
}

/// The guest script: bind nothing by hand (our drivers bind unbound ports to vfio-pci; testpmd
/// finds them bound), then for each run: ours, then DPDK, each section's output between markers.
fn guest_script(o: &Opts) -> String {
    format!(
        r#"set -u
ws="$1"
cd "$ws"
dur={dur}
size={size}
port_of_role() {{ i=0; while [ $i -lt "$OXPMD_NUM_PORTS" ]; do
    eval r=\$OXPMD_PORT${{i}}_ROLE; [ "$r" = "$1" ] && echo $i; i=$((i+1)); done; }}
set -- $(port_of_role dut); D0i=$1; D1i=$2
eval D0=\$OXPMD_PORT$D0i; eval D1=\$OXPMD_PORT$D1i; eval D0MAC=\$OXPMD_PORT${{D0i}}_MAC
eval P0i=\$OXPMD_PORT${{D0i}}_PEER; eval P1i=\$OXPMD_PORT${{D1i}}_PEER
eval P0=\$OXPMD_PORT$P0i; eval P1=\$OXPMD_PORT$P1i
echo "bench: pktgen $P0 -> DUT $D0 => DUT $D1 -> pktgen $P1, $size-byte frames, $dur s"
PKTGEN="target/release/examples/pktgen --tx-port $P0 --rx-port $P1 --dst-mac $D0MAC -P --size $size --duration $dur --drain 2 --cores 0 -T 5"
wait_for() {{ n=0; while ! grep -q "$2" "$1" 2>/dev/null; do n=$((n+1)); [ $n -gt 900 ] && return 1; sleep 0.2; done; }}
run=1
while [ $run -le {runs} ]; do
    echo "=== ours run $run"
    target/release/examples/l2fwd --port $D0 --port $D1 -q 2 --cores 1 -T 0 --no-mac-updating > /tmp/l2fwd.log 2>&1 &
    pid=$!
    wait_for /tmp/l2fwd.log "workers" || echo "bench: l2fwd did not start"
    $PKTGEN
    kill -INT $pid; wait $pid; echo "l2fwd exit $?"
    cat /tmp/l2fwd.log
    echo "=== dpdk run $run"
    dpdk-testpmd -l 0,1 -n 1 --in-memory -a $D0 -a $D1 -- --forward-mode=io --auto-start \
        --stats-period 5 --rxd=1024 --txd=1024 --burst=32 > /tmp/testpmd.log 2>&1 &
    pid=$!
    wait_for /tmp/testpmd.log "packet forwarding" || echo "bench: testpmd did not start"
    sleep 1
    $PKTGEN
    kill -INT $pid; wait $pid; echo "testpmd exit $?"
    grep -E "Forward statistics|RX-packets|TX-packets|Accumulated|io packet|Link|link" /tmp/testpmd.log | tail -20
    run=$((run+1))
done
echo "=== end"
"#,
        dur = o.duration,
        size = o.size,
        runs = o.runs,
    )
}

/// The `pktgen-result:` key/values of each run of `side` ("ours" / "dpdk"), in order.
fn results(output: &str, side: &str) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: Option<&str> = None;
    for l in output.lines() {
        if let Some(rest) = l.strip_prefix("=== ") {
            cur = rest.split_whitespace().next();
            continue;
        }
        if let (true, Some(kv)) = (cur == Some(side), l.strip_prefix("pktgen-result: ")) {
            out.push(
                kv.split_whitespace()
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
        }
    }
    out
}

fn field(r: &HashMap<String, String>, k: &str) -> f64 {
    r.get(k).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// The run with the highest forwarded rate.
fn best(rs: &[HashMap<String, String>]) -> Option<&HashMap<String, String>> {
    rs.iter()
        .max_by(|a, b| field(a, "rx_mpps").total_cmp(&field(b, "rx_mpps")))
}

fn build(ws: &Path) -> Result<(), String> {
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(ws)
        .args([
            "build",
            "--release",
            "-p",
            "oxpmd",
            "--example",
            "l2fwd",
            "--example",
            "pktgen",
        ])
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("cargo build --release of the examples failed ({st})"))
    }
}

fn run(o: &Opts) -> Result<bool, String> {
    let paths = Paths::new();
    if o.build {
        build(&paths.workspace)?;
    }
    let ws = paths.workspace.to_string_lossy().to_string();
    let script = guest_script(o);
    let opts = GuestOptions {
        timeout: Duration::from_secs((2 * o.duration + 240) * u64::from(o.runs) + 120),
        cwd: Some(paths.workspace.clone()),
        echo: true,
        shell: true,
        label: "bench-l2fwd-vm".into(),
        ..GuestOptions::default()
    };
    // The script gets the workspace as $1 through `sh -c SCRIPT sh WS`.
    let cmd = vec![format!("set -- {}; {script}", shell_word(&ws))];
    let out = run_in_guest("quad", &cmd, &opts)?;
    if out.exit_code != 0 {
        return Err(format!(
            "the guest script exited with {} (logs in {})",
            out.exit_code,
            out.run_dir.display()
        ));
    }
    let ours = results(&out.output, "ours");
    let dpdk = results(&out.output, "dpdk");
    let (Some(a), Some(b)) = (best(&ours), best(&dpdk)) else {
        return Err(format!(
            "a side printed no pktgen result ({} ours, {} DPDK); logs in {}",
            ours.len(),
            dpdk.len(),
            out.run_dir.display()
        ));
    };
    let loss = |r: &HashMap<String, String>| {
        let sent = field(r, "sent");
        if sent > 0.0 {
            100.0 * field(r, "lost") / sent
        } else {
            0.0
        }
    };
    println!(
        "\nl2fwd-vm: quad topology, {}-byte frames, {} s per run, {} run(s) per side (best kept); \
         boot to command {:.1} s, logs in {}",
        o.size,
        o.duration,
        o.runs,
        out.boot_to_command.as_secs_f64(),
        out.run_dir.display()
    );
    println!("{:<34} {:>12} {:>12} {:>8}", "row", "ours", "DPDK", "ratio");
    let rows = [
        (
            "forwarded, Mpps (pktgen RX)",
            field(a, "rx_mpps"),
            field(b, "rx_mpps"),
        ),
        (
            "offered, Mpps (pktgen TX)",
            field(a, "tx_mpps"),
            field(b, "tx_mpps"),
        ),
        ("frames through the DUT", field(a, "unique"), field(b, "unique")),
        ("frames lost, % of sent", loss(a), loss(b)),
        ("latency avg, us", field(a, "lat_avg_us"), field(b, "lat_avg_us")),
    ];
    for (name, x, y) in rows {
        let r = if y > 0.0 {
            format!("{:.3}", x / y)
        } else {
            "-".into()
        };
        println!("{name:<34} {x:>12.4} {y:>12.4} {r:>8}");
    }
    let ratio = field(a, "rx_mpps") / field(b, "rx_mpps").max(1e-12);
    println!("ratio: {ratio:.3}");
    Ok(true)
}

fn shell_word(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Entry point of `cargo xtask bench l2fwd-vm ARGS`.
pub fn vm(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench l2fwd-vm: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench l2fwd-vm: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        assert_eq!(
            parse(&[]).unwrap(),
            Opts {
                duration: 20,
                runs: 1,
                size: 64,
                build: true
            }
        );
        let v: Vec<String> = ["--duration", "5", "--runs", "2", "--no-build"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse(&v).unwrap();
        assert_eq!((o.duration, o.runs, o.build), (5, 2, false));
        assert!(parse(&["--size".into(), "63".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
    }

    #[test]
    fn results_are_split_by_side_and_the_best_is_kept() {
        let out = "=== ours run 1\npktgen-result: sent=10 rx_mpps=0.2 lost=0\n\
                   === dpdk run 1\npktgen-result: sent=10 rx_mpps=0.25\n\
                   === ours run 2\npktgen-result: sent=10 rx_mpps=0.3\n=== end\n";
        let ours = results(out, "ours");
        let dpdk = results(out, "dpdk");
        assert_eq!((ours.len(), dpdk.len()), (2, 1));
        assert_eq!(field(best(&ours).unwrap(), "rx_mpps"), 0.3);
        assert!(guest_script(&parse(&[]).unwrap()).contains("--forward-mode=io"));
    }
}
