//! Runtime skips for libtest tests.
//!
//! libtest decides `#[ignore]` at compile time; a test that finds at run time that it cannot run
//! here (no 1 GiB hugepages, no free 2 MiB page) can only return, and libtest then reports it as
//! passed. So such a test calls [`skip`] just before it returns: it prints
//! `SKIP <test>: <reason>` (seen with `--nocapture`) and, when the test runs under
//! `cargo xtask test` or `cargo xtask vm test`, appends a record to the file named by
//! [`SKIPS_FILE_ENV`]. The runner reads the records after the run and moves each test that both
//! recorded a skip and passed from "passed" to "skipped" (a test that recorded a skip and then
//! failed stays failed). Run with plain `cargo test`, a skipped test still shows as `ok`: that is
//! libtest's limit, and why the project's test command is `cargo xtask test`.
//!
//! A record names the test by the name libtest gives the thread it runs the test on (the test's
//! path, e.g. `region::tests::hugepage_region_or_clear_error`), so [`skip`] must be called on the
//! test's own thread, and by the test binary's file name.
//!
//! Record format (one line per skip, fields separated by tabs, tabs and line breaks in the
//! reason replaced by spaces): `BINARY \t TEST \t REASON`.
#![forbid(unsafe_code)]

use std::fmt::Display;
use std::io::Write;

/// The environment variable naming the file [`skip`] appends its record to.
pub const SKIPS_FILE_ENV: &str = "OXPMD_TEST_SKIPS";

/// One skipped test, as recorded by [`skip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipRecord {
    /// The test binary's file name (e.g. `oxpmd_dma-0123abcd`).
    pub binary: String,
    /// The test's name as libtest prints it.
    pub test: String,
    /// Why it could not run.
    pub reason: String,
}

impl SkipRecord {
    /// The record as one line of the skips file (with its line end).
    pub fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{}\n",
            one_field(&self.binary),
            one_field(&self.test),
            one_field(&self.reason)
        )
    }
}

/// Replaces what would break a tab-separated line.
fn one_field(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

/// Reports the calling test as skipped, with the reason; the test should return right after.
///
/// Panics (failing the test) when [`SKIPS_FILE_ENV`] names a file that cannot be written: the
/// runner asked for the record and would otherwise count the test as passed.
pub fn skip(reason: impl Display) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed thread>")
        .to_string();
    let reason = reason.to_string();
    println!("SKIP {test}: {reason}");
    let Some(path) = std::env::var_os(SKIPS_FILE_ENV) else {
        return;
    };
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "<unknown binary>".into());
    let line = SkipRecord {
        binary,
        test: test.clone(),
        reason,
    }
    .to_line();
    // One write of one short line with O_APPEND: records of parallel tests do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!(
            "{test}: cannot record the skip in {} (${SKIPS_FILE_ENV}): {e}; the test runner would count \
             this test as passed",
            path.to_string_lossy()
        );
    }
}

/// Parses the lines of a skips file; malformed lines are returned as errors, not dropped.
pub fn parse_records(text: &str) -> Vec<Result<SkipRecord, String>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            match (f.next(), f.next(), f.next()) {
                (Some(b), Some(t), Some(r)) if !t.is_empty() => Ok(SkipRecord {
                    binary: b.to_string(),
                    test: t.to_string(),
                    reason: r.to_string(),
                }),
                _ => Err(format!("malformed skip record {l:?}")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_survive_tabs_and_newlines() {
        let r = SkipRecord {
            binary: "oxpmd_dma-1".into(),
            test: "region::tests::x".into(),
            reason: "no page\tfree\nhere".into(),
        };
        let line = r.to_line();
        assert_eq!(line.matches('\n').count(), 1);
        let parsed = parse_records(&format!("{line}garbage\n\n"));
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[0],
            Ok(SkipRecord {
                reason: "no page free here".into(),
                ..r
            })
        );
        assert!(parsed[1].is_err());
    }

    #[test]
    fn skip_appends_a_record_naming_this_test() {
        // The test runs in a child process: the environment variable must not leak into other
        // tests of this binary, which run on other threads.
        const CHILD: &str = "OXPMD_TEST_SKIP_CHILD";
        if std::env::var_os(CHILD).is_some() {
            skip("child asked to skip");
            return;
        }
        let dir = std::env::temp_dir().join(format!("oxpmd-test-skip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("skips");
        let _ = std::fs::remove_file(&file);
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::skip_appends_a_record_naming_this_test",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env(SKIPS_FILE_ENV, &file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("SKIP tests::skip_appends_a_record_naming_this_test: child asked to skip"),
            "{stdout}"
        );
        let recs = parse_records(&std::fs::read_to_string(&file).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(recs.len(), 1, "{recs:?}");
        let r = recs[0].as_ref().unwrap();
        assert_eq!(r.test, "tests::skip_appends_a_record_naming_this_test");
        assert_eq!(r.reason, "child asked to skip");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(r.binary, exe.file_name().unwrap().to_string_lossy());
    }
}
