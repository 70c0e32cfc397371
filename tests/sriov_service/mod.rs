//! Shared helpers of the VM tests of the PF service (`oxpmd sriov serve`): the service as a
//! child process with the test's socket, token and state files, `oxpmd vf` and raw control
//! requests, tagged test frames.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::common::*;
use oxpmd::pmd::{Burst, MacAddr, RxQueue, TxQueue};
use oxpmd_dma::Mempool;

pub const DIR: &str = "/run/oxpmd-test";

pub fn pf() -> String {
    env("OXPMD_PORT0")
}

pub fn socket() -> PathBuf {
    PathBuf::from(DIR).join("svc.sock")
}

/// `oxpmd sriov serve --pf PF ARGS` with the test's socket, token and state files.
pub fn serve(args: &[&str]) -> Manager {
    std::fs::create_dir_all(DIR).unwrap();
    let token_file = PathBuf::from(DIR).join("svc.token");
    let state_file = PathBuf::from(DIR).join("svc.state");
    let mut c = Command::new(env!("CARGO_BIN_EXE_oxpmd"));
    c.args(["sriov", "serve", "--pf", &pf()])
        .args(args)
        .arg("--socket")
        .arg(socket())
        .arg("--token-file")
        .arg(&token_file)
        .arg("--state-file")
        .arg(&state_file);
    let m = Manager::from_command(c, token_file, state_file);
    assert!(
        m.wait_line(|l| l.contains("oxpmd: serving"), DEADLINE),
        "the PF service did not start:\n{}",
        m.output()
    );
    m
}

/// `oxpmd vf ARGS --socket S`: (exit code, stdout, stderr).
pub fn vf(args: &[&str]) -> (i32, String, String) {
    let out = run_bounded(
        &format!("oxpmd vf {}", args.join(" ")),
        Command::new(env!("CARGO_BIN_EXE_oxpmd"))
            .arg("vf")
            .args(args)
            .arg("--socket")
            .arg(socket()),
        COMMAND_LIMIT,
    );
    let r = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ oxpmd vf {}\n{}{}", args.join(" "), r.1, r.2);
    r
}

pub fn vf_ok(args: &[&str]) -> String {
    let (code, out, err) = vf(args);
    assert_eq!(code, 0, "oxpmd vf {args:?} failed: {err}");
    out
}

pub fn vf_json(args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&vf_ok(&a)).expect("JSON")
}

/// One raw request line on the control socket; the answer.
pub fn raw(line: &[u8]) -> serde_json::Value {
    let mut s = UnixStream::connect(socket()).unwrap();
    // A service that never answers fails the test instead of hanging it.
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s.write_all(line).unwrap();
    let mut r = String::new();
    BufReader::new(&s).read_line(&mut r).unwrap();
    serde_json::from_str(&r).unwrap()
}

/// A test frame with an 802.1Q tag `vid` after the MACs.
pub fn tagged(dst: MacAddr, src: MacAddr, vid: u16, tag: u16, seq: u32) -> Vec<u8> {
    let mut f = frame(dst, src, tag, seq);
    f.splice(12..12, [0x81, 0x00, (vid >> 8) as u8, vid as u8]);
    f
}

/// The VLAN id and the frame without its tag, when it has one.
pub fn untag(d: &[u8]) -> Option<(u16, Vec<u8>)> {
    if d.len() < 18 || d[12..14] != [0x81, 0x00] {
        return None;
    }
    let vid = u16::from_be_bytes([d[14], d[15]]) & 0xFFF;
    let mut f = d[..12].to_vec();
    f.extend_from_slice(&d[16..]);
    Some((vid, f))
}

pub fn send_raw(tx: &mut TxQueue, pool: &Mempool, frames: &[Vec<u8>]) {
    let mut b = Burst::new();
    for f in frames {
        let mut p = pool.alloc().expect("buffer");
        p.extend_from_slice(f).unwrap();
        b.push(p).unwrap();
        let t = Instant::now();
        while !b.is_empty() {
            tx.tx_burst(&mut b);
            tx.reclaim();
            assert!(t.elapsed() < DEADLINE, "TX stuck");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// (tagged with `vid`, untagged) test frames with `tag` received within `wait`.
pub fn receive_vlan(rx: &mut RxQueue, tag: u16, vid: u16, wait: Duration) -> (usize, usize) {
    let (mut with, mut without) = (0, 0);
    let mut b = Burst::new();
    let t = Instant::now();
    while t.elapsed() < wait {
        if rx.rx_burst(&mut b) == 0 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        for p in b.drain() {
            match untag(p.data()) {
                Some((v, f)) if v == vid && parse(&f).is_some_and(|(tg, _)| tg == tag) => with += 1,
                None if parse(p.data()).is_some_and(|(tg, _)| tg == tag) => without += 1,
                _ => {}
            }
        }
    }
    (with, without)
}

pub fn token_of(m: &Manager) -> String {
    std::fs::read_to_string(&m.token_file).unwrap().trim().to_string()
}

/// The network interface of VF `vf` bound to the kernel's igbvf. igbvf registers its netdev at
/// the end of its probe, after the reset handshake (which it may do twice: the probe resets the
/// VF once more).
pub fn kernel_netdev(vf: &str) -> String {
    let netdir = format!("/sys/bus/pci/devices/{vf}/net");
    let t = Instant::now();
    loop {
        if let Some(e) = std::fs::read_dir(&netdir)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
        {
            return e.file_name().to_string_lossy().into_owned();
        }
        assert!(t.elapsed() < DEADLINE, "the kernel VF has no netdev ({netdir})");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Loads the kernel's igbvf driver in the guest.
pub fn modprobe_igbvf() {
    let out = run_bounded(
        "modprobe igbvf",
        Command::new(env("OXPMD_VM_MODPROBE")).arg("igbvf"),
        COMMAND_LIMIT,
    );
    assert!(
        out.status.success(),
        "modprobe igbvf: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
