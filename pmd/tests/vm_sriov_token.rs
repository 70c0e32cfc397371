//! vm-topology: pair
//!
//! SR-IOV from userspace, the VF token and the PF manager's life cycle, against the kernel's
//! vfio-pci and QEMU's 82576 in the test VM (port 0 is the PF):
//! - a VF opened without the token and with a wrong one is refused with our message naming the
//!   cause; with the token from the manager's 0600 file the kernel hands the VF out;
//! - the manager stops cleanly on SIGTERM and leaves its state;
//! - a restart while a VF is open: without the token the kernel refuses the PF (our message says
//!   so); a corrupted state file is refused; with both, service resumes.
//!
//! Run with `cargo xtask vm test -p oxpmd-pmd vm_sriov_token` (the examples must be built).

mod vm_sriov_common;

use std::os::unix::fs::PermissionsExt;

use oxpmd_vfio::{Container, PciAddress, VfToken};
use vm_sriov_common::*;

fn pf() -> String {
    env("OXPMD_PORT0")
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn vf_open_needs_the_right_token() {
    init_log();
    let m = Manager::start(&["--pf", &pf(), "--vfs", "2", "--vf", "1:trust=on,vlans=4"]);
    let vfs = vf_addrs(&pf());
    assert_eq!(vfs.len(), 2);
    let mode = std::fs::metadata(&m.token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode");
    assert!(
        m.has_line(|l| l.contains("VF 1:") && l.contains("trust=on")),
        "{}",
        m.output()
    );

    // No token at all (no option, no environment variable): the igbvf driver's error names the
    // kernel's reason and where the token comes from.
    let e = open_port(&vfs[0], 0, None).expect_err("a VF without token must be refused");
    let msg = e.to_string();
    eprintln!("no token: {msg}");
    assert!(msg.contains("no VF token given"), "{msg}");
    assert!(
        msg.contains("OXPMD_VF_TOKEN_FILE"),
        "the hint names the variable: {msg}"
    );

    // A wrong token.
    let e =
        open_port(&vfs[0], 0, Some(VfToken::generate().expose())).expect_err("a wrong token must be refused");
    let msg = e.to_string();
    eprintln!("wrong token: {msg}");
    assert!(msg.contains("does not match"), "{msg}");

    // A malformed token in the environment is refused before the kernel is asked.
    let e = open_port(&vfs[0], 0, Some("not-a-token".into())).expect_err("a malformed token must be refused");
    assert!(e.to_string().contains("not a UUID"), "{e}");

    // The right token from the manager's file: the kernel hands the VF out.
    let token = VfToken::load(&m.token_file).unwrap();
    let c = Container::open().unwrap();
    let dev = c
        .open_device(PciAddress::parse(&vfs[0]).unwrap(), Some(&token))
        .unwrap_or_else(|e| panic!("the right token is accepted: {e}"));
    assert!(dev.map_bar(0).is_ok(), "the VF's BAR0 maps");
    drop(dev);
    drop(c);

    let (ok, out) = m.stop();
    assert!(ok, "the manager stops cleanly on SIGTERM:\n{out}");
    assert!(out.contains("counters VF 0"), "{out}");
    assert!(out.contains("VFs left enabled"), "{out}");
    assert!(std::fs::metadata("/run/oxpmd-test/pf.state").is_ok());
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn pf_restart_with_a_vf_open() {
    init_log();
    let m = Manager::start(&["--pf", &pf(), "--vfs", "2", "--vf", "0:mac=02:00:00:00:77:01"]);
    let vfs = vf_addrs(&pf());
    let token = VfToken::load(&m.token_file).unwrap();
    let state_file = m.state_file.clone();
    let token_file = m.token_file.clone();
    let good_state = std::fs::read(&state_file).unwrap();
    // A VF process holds VF 0 open (here: this process, through VFIO).
    let c = Container::open().unwrap();
    let vf = c
        .open_device(PciAddress::parse(&vfs[0]).unwrap(), Some(&token))
        .expect("VF 0 opens with the token");
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
    assert_eq!(vf_addrs(&pf()).len(), 2, "the VFs stay enabled");

    // 1. Without the token: the kernel refuses the PF while its VF is open.
    let moved = token_file.with_extension("moved");
    std::fs::rename(&token_file, &moved).unwrap();
    let m = Manager::spawn(&["--pf", &pf(), "--vfs", "2", "--restart"]);
    let (ok, out) = m.wait_exit();
    assert!(!ok, "a restart without the token must fail:\n{out}");
    assert!(out.contains("no VF token given"), "{out}");
    assert!(out.contains("the PF itself while VFs are open"), "{out}");
    std::fs::rename(&moved, &token_file).unwrap();

    // 2. With a wrong token.
    let wrong = token_file.with_extension("wrong");
    let _ = std::fs::remove_file(&wrong);
    VfToken::generate().save(&wrong).unwrap();
    let m = Manager::spawn(&[
        "--pf",
        &pf(),
        "--vfs",
        "2",
        "--restart",
        "--token-file",
        wrong.to_str().unwrap(),
    ]);
    let (ok, out) = m.wait_exit();
    assert!(!ok, "{out}");
    assert!(out.contains("does not match"), "{out}");

    // 3. A corrupted state file (one flipped byte), and a truncated one.
    let mut bad = good_state.clone();
    bad[40] ^= 0x10;
    std::fs::write(&state_file, &bad).unwrap();
    let m = Manager::spawn(&["--pf", &pf(), "--vfs", "2", "--restart"]);
    let (ok, out) = m.wait_exit();
    assert!(!ok, "{out}");
    assert!(
        out.contains("saved state refused") && out.contains("checksum"),
        "{out}"
    );
    std::fs::write(&state_file, &good_state[..good_state.len() - 7]).unwrap();
    let m = Manager::spawn(&["--pf", &pf(), "--vfs", "2", "--restart"]);
    let (ok, out) = m.wait_exit();
    assert!(!ok, "{out}");
    assert!(out.contains("saved state refused"), "{out}");

    // 4. The right token and the saved state: service resumes with the saved MAC and policy.
    std::fs::write(&state_file, &good_state).unwrap();
    let m = Manager::start(&["--pf", &pf(), "--vfs", "2", "--restart"]);
    assert!(
        m.has_line(|l| l.contains("restarted: PF opened with the saved token")),
        "{}",
        m.output()
    );
    assert_eq!(m.vf_mac(0).to_string(), "02:00:00:00:77:01");
    drop(vf);
    drop(c);
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn manager_refuses_bad_arguments_before_touching_the_device() {
    let run = |args: &[&str]| {
        let out = run_bounded(
            "sriov-pf with bad arguments",
            std::process::Command::new(example("sriov-pf")).args(args),
            COMMAND_LIMIT,
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let p = pf();
    for (args, want) in [
        (vec!["--pf", &p], "--vfs is required"),
        (vec!["--pf", &p, "--vfs", "8"], "expected 1..=7"),
        (
            vec!["--pf", &p, "--vfs", "2", "--vf", "3:trust=on"],
            "only 2 VF(s)",
        ),
        (
            vec!["--pf", &p, "--vfs", "2", "--vf", "0:mac=01:00:5e:00:00:01"],
            "not a valid unicast",
        ),
        (
            vec!["--pf", &p, "--vfs", "2", "--vf", "0:bogus=1"],
            "unknown setting",
        ),
        (
            vec!["--pf", &p, "--vfs", "2", "--vf", "0:vlans=99"],
            "out of range",
        ),
    ] {
        let (code, err) = run(&args);
        assert_ne!(code, Some(0), "{args:?} accepted");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn pf_forwards_its_own_traffic_with_vfs_on() {
    init_log();
    let m = Manager::start(&["--pf", &pf(), "--vfs", "2", "--pf-echo"]);
    assert!(
        m.has_line(|l| l.contains("PF pool 2 forwards its own traffic")),
        "{}",
        m.output()
    );
    let pf_mac: oxpmd_pmd::MacAddr = env("OXPMD_PORT0_MAC").parse().unwrap();
    let mut wire = oxpmd_pmd::Port::open(&env("OXPMD_PORT1"), 1).unwrap();
    let wpool = pool_for(&wire, "wire", 2048);
    let (mut wrx, mut wtx) = start(&mut wire, &wpool);
    let wmac = wire.mac_addr();
    wire.wait_link_up(DEADLINE).unwrap();
    drain(&mut wrx);
    // The wire sends to the PF's MAC: VMDq puts it in the PF's pool (RAR 0's pool bit), the PF
    // echoes it on its own queue, the wire gets it back from the PF's MAC.
    // Fewer frames than the wire's RX ring holds: they are read after all were sent.
    const N: u32 = 200;
    send(&mut wtx, &wpool, pf_mac, wmac, 7, N);
    let got = receive(&mut wrx, 7, N as usize, DEADLINE);
    assert!(
        exact(got.clone(), N),
        "echoed {} of {N} (exactly once each)",
        got.len()
    );
    // Frames to a MAC nobody owns go to the default pool (the PF's) and come back too.
    let stranger: oxpmd_pmd::MacAddr = "02:99:00:00:00:01".parse().unwrap();
    send(&mut wtx, &wpool, stranger, wmac, 8, 50);
    let got = receive(&mut wrx, 8, 50, DEADLINE);
    assert!(exact(got.clone(), 50), "default pool: {} of 50", got.len());
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
    assert!(out.contains("PF pool echoed 250 frame(s)"), "{out}");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn manager_launches_vf_processes_with_the_token() {
    init_log();
    // The launched command sees the token file (and can read it: same user) and the VF
    // addresses; the manager stops when it exits, and fails when it fails.
    let m = Manager::spawn(&[
        "--pf",
        &pf(),
        "--vfs",
        "2",
        "--launch",
        "echo child: VF0=$OXPMD_VF0 VF1=$OXPMD_VF1 PF=$OXPMD_PF token_bytes=$(wc -c < $OXPMD_VF_TOKEN_FILE)",
    ]);
    let (ok, out) = m.wait_exit();
    assert!(ok, "{out}");
    let vfs = vf_addrs(&pf());
    assert!(
        out.contains(&format!(
            "child: VF0={} VF1={} PF={} token_bytes=37",
            vfs[0],
            vfs[1],
            pf()
        )),
        "{out}"
    );
    assert!(out.contains("launched command exited"), "{out}");
    let m = Manager::spawn(&["--pf", &pf(), "--vfs", "1", "--launch", "exit 3"]);
    let (ok, out) = m.wait_exit();
    assert!(!ok, "a failing launched command fails the manager:\n{out}");
    assert!(out.contains("1 launched command(s) failed"), "{out}");
}
