//! Pieces the examples share: the SIGINT / SIGTERM stop flag, a minimal stderr logger
//! (`OXPMD_LOG`), the `say!` text output that yields stdout to JSON, set-up step timing, numeric
//! option parsing, the JSON port counters and the usual `main` (parse, usage, run, exit code).
//!
//! Included by each example with `#[path = "common/mod.rs"] mod common;` (cargo does not take
//! this directory for an example: it has no `main.rs`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use oxpmd::pmd::capture::{Capture, CaptureConfig, CaptureReport, json_escape, port_stats_json};
use oxpmd::pmd::{LinkEvents, Port, PortError, PortStats};

/// The error type of an example's `run`.
pub type BoxError = Box<dyn std::error::Error>;

/// The SIGINT / SIGTERM stop flag and its installer (the library's).
pub use oxpmd::pmd::signal::{STOP, install_stop_handlers as install_signal_handlers};

/// Set by `--stats-json`: stdout carries JSON only, text lines go to stderr.
pub static JSON_MODE: AtomicBool = AtomicBool::new(false);

/// A text line: stdout, or stderr under `--stats-json` ([`JSON_MODE`]).
macro_rules! say {
    ($($t:tt)*) => {
        if $crate::common::JSON_MODE.load(::std::sync::atomic::Ordering::Relaxed) {
            eprintln!($($t)*)
        } else {
            println!($($t)*)
        }
    };
}
pub(crate) use say;

/// A set-up step of program `prog` and its duration, on stderr.
pub fn step(prog: &str, what: &str, t: Instant) {
    eprintln!("{prog}: setup: {what}: {:.3} s", t.elapsed().as_secs_f64());
}

/// A minimal stderr logger (no extra crate).
struct StderrLogger(log::LevelFilter);

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.0
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

/// Installs the stderr logger at the level `OXPMD_LOG` names (error, warn, info, debug, trace,
/// off), else at `default`.
pub fn init_logger(default: log::LevelFilter) {
    let level = match std::env::var("OXPMD_LOG").as_deref() {
        Ok("error") => log::LevelFilter::Error,
        Ok("warn") => log::LevelFilter::Warn,
        Ok("info") => log::LevelFilter::Info,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        Ok("off") => log::LevelFilter::Off,
        _ => default,
    };
    let logger: &'static StderrLogger = Box::leak(Box::new(StderrLogger(level)));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// The value of option `opt` as a number within `range`; the error names the option.
pub fn parse_num<T, S>(opt: &str, v: Option<&S>, range: std::ops::RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
    S: AsRef<str> + ?Sized,
{
    let v = v.ok_or_else(|| format!("{opt}: missing value"))?.as_ref();
    let n: T = v.parse().map_err(|_| format!("{opt}: `{v}` is not a number"))?;
    if !range.contains(&n) {
        return Err(format!(
            "{opt}: {n} out of range {}..={}",
            range.start(),
            range.end()
        ));
    }
    Ok(n)
}

/// The usual example `main` after logger set-up: parses the arguments (an empty error asks for
/// the usage: printed on stdout, exit 0; another error: printed with the usage, exit 2), runs,
/// and exits 0 when `run` reports success, 1 when it reports failure, `error_code` on an error.
pub fn cli_main<O>(
    prog: &str,
    usage: &str,
    parse_args: fn(&[String]) -> Result<O, String>,
    run: fn(&O) -> Result<bool, BoxError>,
    error_code: u8,
) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{prog}: {e}\n{usage}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{prog}: {e}");
            ExitCode::from(error_code)
        }
    }
}

/// JSON array of every port's counters (per port and per queue) and rates since `prev` (or over
/// `dt` seconds when there is no previous reading); updates `prev`.
pub fn ports_json(ports: &mut [Port], prev: &mut [Option<PortStats>], dt: f64) -> String {
    let mut out = Vec::new();
    for (p, last) in ports.iter_mut().zip(prev.iter_mut()) {
        match p.stats() {
            Ok(st) => {
                out.push(port_stats_json(p.id(), p.name(), &st, last.as_ref(), dt));
                *last = Some(st);
            }
            Err(e) => out.push(format!(
                "{{\"port\":{},\"name\":{},\"error\":{}}}",
                p.id(),
                json_escape(p.name()),
                json_escape(&e.to_string())
            )),
        }
    }
    format!("[{}]", out.join(","))
}

/// Starts a capture to `path` (none without a path) with `slots` records, each holding frames of
/// up to `max_frame` bytes whole (at least the default record length); times the step.
pub fn start_capture(
    prog: &str,
    path: Option<&Path>,
    slots: usize,
    max_frame: usize,
) -> Result<Option<Capture>, BoxError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let t = Instant::now();
    let c = Capture::start(
        path,
        &CaptureConfig {
            slots,
            record_len: max_frame.clamp(CaptureConfig::default().record_len, 65535),
        },
    )?;
    step(
        prog,
        &format!("capture to {} ({} records)", path.display(), slots),
        t,
    );
    Ok(Some(c))
}

/// Ends `capture` (if any) and says its counts on a line starting with `prefix`.
pub fn finish_capture(
    prefix: &str,
    capture: Option<Capture>,
    path: Option<&Path>,
) -> Result<Option<CaptureReport>, BoxError> {
    let Some(c) = capture else {
        return Ok(None);
    };
    let r = c.finish()?;
    say!(
        "{prefix}capture {}: captured {} frames, dropped {} (writer behind), written {}",
        path.unwrap_or(Path::new("")).display(),
        r.captured,
        r.dropped,
        r.written
    );
    Ok(Some(r))
}

/// Each port's link-events handle, where its device has a link-change interrupt; a virtual port
/// (its link never changes) refuses, silently.
pub fn take_link_events(ports: &mut [Port]) -> Vec<(u16, LinkEvents)> {
    let mut out = Vec::new();
    for p in ports.iter_mut() {
        match p.link_events() {
            Ok(ev) => {
                say!(
                    "port {} ({}): link events through {}",
                    p.id(),
                    p.name(),
                    ev.describe()
                );
                out.push((p.id(), ev));
            }
            Err(PortError::Unsupported { .. }) => {}
            Err(e) => say!("port {} ({}): no link events: {e}", p.id(), p.name()),
        }
    }
    out
}

/// Prints `port N link down` / `port N link up SPEED ...` for every change since the last call
/// (a non-blocking eventfd read per port while nothing happens).
pub fn print_link_events(events: &mut [(u16, LinkEvents)]) {
    for (id, ev) in events.iter_mut() {
        loop {
            match ev.poll() {
                Ok(Some(e)) => say!("port {id} link {}", e.status),
                Ok(None) => break,
                Err(e) => {
                    say!("port {id}: link events: {e}");
                    break;
                }
            }
        }
    }
}

/// The one pool of an application's ports: mapped for the first port with a DMA map (the
/// VFIO ports share its container), on `pages` when given (else 2 MiB hugepages; virtual ports
/// alone fall back to 4 KiB), and chunk-aligned when a port says it needs that (an `xdp:` port,
/// whose pool is its UMEM: 4096-byte buffers with the default data room, which every other port
/// takes as well).
pub fn ports_pool(
    name: &str,
    ports: &[Port],
    size: usize,
    cache: usize,
    pages: Option<oxpmd::dma::PageSize>,
) -> Result<oxpmd::dma::Mempool, oxpmd::dma::MempoolError> {
    use oxpmd::dma::{DmaMap, IdentityMap, Mempool, MempoolConfig, RegionOptions};
    let map = ports.iter().find_map(|p| p.dma_map());
    let chunk_aligned = ports.iter().any(|p| p.info().needs_chunk_aligned_pool);
    let config = |region| MempoolConfig {
        cache_size: cache,
        region,
        chunk_aligned,
        ..MempoolConfig::new(name, size)
    };
    let identity = || -> std::sync::Arc<dyn DmaMap> { std::sync::Arc::new(IdentityMap) };
    match (pages, map) {
        (Some(page_size), map) => Mempool::new(
            &config(RegionOptions {
                page_size,
                allow_4k_fallback: false,
            }),
            map.unwrap_or_else(identity),
        ),
        (None, Some(map)) => Mempool::new(&config(RegionOptions::default()), map),
        (None, None) => oxpmd::pmd::vport::virtual_pool_with(&config(RegionOptions::default())),
    }
}
