//! `cargo xtask l2fwd`: the main job of the README. l2fwd forwards packets between two emulated
//! 82576 ports in the test VM, driven by pktgen on the other side of the links.
//!
//! Topology `quad`: ports 0 <-> 2 and 1 <-> 3 are linked. l2fwd runs on the DUT ports 2 and 3
//! (forwarding 2 -> 3 and 3 -> 2); pktgen sends on port 0 (reaching port 2) and checks what comes
//! back on port 1 (from port 3): every frame once, intact but for l2fwd's MAC rewrite.

use std::process::{Command, ExitCode};
use std::time::Duration;

use crate::vm::{GuestOptions, run_in_guest};

const USAGE: &str = "\
usage: cargo xtask l2fwd [--count N] [--size BYTES] [--rate PPS] [--debug]
  Sets up the test VM if needed (first run: packages and the guest kernel, as root), builds the
  examples, boots the `quad` topology and runs l2fwd on ports 2 and 3 while pktgen sends N frames
  on port 0 and checks them on port 1.
  --count N      frames to send (default 20000)
  --size BYTES   frame size with FCS (default 64)
  --rate PPS     pktgen's rate (default 20000: the emulated NIC drops above what TCG sustains)
  --debug        use debug builds";

struct Options {
    count: u64,
    size: u32,
    rate: u64,
    release: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        count: 20_000,
        size: 64,
        rate: 20_000,
        release: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            it.next()
                .ok_or(format!("{name}: missing value"))?
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        match a.as_str() {
            "--count" => o.count = num("--count")?.clamp(1, 100_000_000),
            "--size" => {
                o.size = u32::try_from(num("--size")?).map_err(|_| "--size: too large".to_string())?;
                if !(64..=1518).contains(&o.size) {
                    return Err("--size: 64..=1518".into());
                }
            }
            "--rate" => o.rate = num("--rate")?.max(1),
            "--debug" => o.release = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(o)
}

pub fn main(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("xtask l2fwd: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let xtask = std::env::current_exe().unwrap_or_else(|_| "xtask".into());

    println!("==> test VM set-up (cached after the first run)");
    match Command::new(&xtask).args(["vm", "setup"]).status() {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("xtask l2fwd: `cargo xtask vm setup` failed ({s})");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("xtask l2fwd: cannot run `cargo xtask vm setup`: {e}");
            return ExitCode::FAILURE;
        }
    }

    println!("==> building l2fwd and pktgen");
    let mut build = Command::new(&cargo);
    build.args(["build", "--example", "l2fwd", "--example", "pktgen"]);
    if o.release {
        build.arg("--release");
    }
    match build.status() {
        Ok(s) if s.success() => {}
        _ => {
            eprintln!("xtask l2fwd: building the examples failed");
            return ExitCode::FAILURE;
        }
    }
    let bin = format!("target/{}/examples", if o.release { "release" } else { "debug" });

    // The guest script: l2fwd in the background on the DUT ports, pktgen in the foreground once
    // l2fwd's links are up, then l2fwd stopped with SIGINT (final stats, leak check). The guest has
    // two vCPUs: l2fwd polls both ports from one worker on CPU 1, pktgen keeps CPU 0, so no two
    // busy-polling threads share a vCPU.
    let script = format!(
        r#"set -u
{bin}/l2fwd --port "$OXPMD_PORT2" --port "$OXPMD_PORT3" -P -q 2 --cores 1 -T 5 > /tmp/l2fwd.log 2>&1 &
l2fwd=$!
for _ in $(seq 1 120); do grep -q "^l2fwd: .* workers" /tmp/l2fwd.log && break; kill -0 $l2fwd 2>/dev/null || break; sleep 0.5; done
cat /tmp/l2fwd.log
{bin}/pktgen --tx-port "$OXPMD_PORT0" --rx-port "$OXPMD_PORT1" -P --cores 0 --count {count} --size {size} --rate {rate} --drain 3 --expect-all --expect-rx-dst 02:00:00:00:00:01 -T 5
pktgen=$?
kill -INT $l2fwd 2>/dev/null
wait $l2fwd
l2fwd_rc=$?
sed -n '/Final statistics/,$p' /tmp/l2fwd.log
echo "l2fwd exit $l2fwd_rc, pktgen exit $pktgen"
[ $pktgen -eq 0 ] && [ $l2fwd_rc -eq 0 ]
"#,
        count = o.count,
        size = o.size,
        rate = o.rate,
    );
    println!(
        "==> booting the test VM (topology quad) and forwarding {} frames",
        o.count
    );
    let opts = GuestOptions {
        timeout: Duration::from_secs(900),
        echo: true,
        shell: true,
        label: "l2fwd".into(),
        ..GuestOptions::default()
    };
    match run_in_guest("quad", &[script], &opts) {
        Ok(out) => {
            println!(
                "==> guest finished: exit {} (boot to command {:.1} s, total {:.1} s)",
                out.exit_code,
                out.boot_to_command.as_secs_f64(),
                out.total.as_secs_f64()
            );
            if out.exit_code == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("xtask l2fwd: {e}");
            ExitCode::FAILURE
        }
    }
}
