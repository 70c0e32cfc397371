//! Tests that reported themselves skipped at run time (crate `oxpmd-test-skip`): the runners give
//! the test binaries a skips file, read it after the run and count a recorded test as skipped
//! instead of passed when libtest reported it `ok`. A test that recorded a skip and then failed
//! stays a failure; a record whose test libtest did not report is shown, not counted.

use std::collections::HashMap;
use std::path::Path;

pub use oxpmd_test_skip::SKIPS_FILE_ENV;
use oxpmd_test_skip::{SkipRecord, parse_records};

/// The tests libtest reported `ok` (`test NAME ... ok` lines), by name, with how often.
#[derive(Default, Debug)]
pub struct PassedTests(HashMap<String, u32>);

impl PassedTests {
    /// Notes a libtest result line.
    pub fn add_line(&mut self, line: &str) {
        if let Some(name) = line
            .trim()
            .strip_prefix("test ")
            .and_then(|r| r.strip_suffix(" ... ok"))
        {
            *self.0.entry(name.to_string()).or_default() += 1;
        }
    }

    /// Notes every result line of `text`.
    pub fn add_text(&mut self, text: &str) {
        text.lines().for_each(|l| self.add_line(l));
    }

    /// The names of the tests seen passing.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// How many passes were seen (a name seen twice counts twice).
    pub fn total(&self) -> u32 {
        self.0.values().sum()
    }

    /// Takes one passed test of this name, if there is one left.
    fn take(&mut self, name: &str) -> bool {
        match self.0.get_mut(name) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

/// What the skip records of one run come to.
#[derive(Default, Debug)]
pub struct Skips {
    /// Tests that passed and recorded a skip: skipped, not passed.
    pub counted: Vec<SkipRecord>,
    /// Records that do not count, with why (malformed, or no passing test of that name).
    pub not_counted: Vec<String>,
}

impl Skips {
    /// Settles the records of a skips file against the passed tests.
    pub fn settle(text: &str, passed: &mut PassedTests) -> Skips {
        let mut s = Skips::default();
        for rec in parse_records(text) {
            match rec {
                Ok(r) if passed.take(&r.test) => s.counted.push(r),
                Ok(r) => s.not_counted.push(format!(
                    "{} ({}) recorded a skip but libtest did not report it passed: counted as libtest \
                     reported it ({})",
                    r.test, r.binary, r.reason
                )),
                Err(e) => s.not_counted.push(e),
            }
        }
        s
    }

    /// Reads and settles a skips file; a missing file means no test skipped.
    pub fn settle_file(path: &Path, passed: &mut PassedTests) -> Result<Skips, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Skips::settle(&text, passed)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Skips::default()),
            Err(e) => Err(format!("read the skips file {}: {e}", path.display())),
        }
    }

    /// Prints one line per skipped test and per record that did not count.
    pub fn print(&self, prefix: &str) {
        for r in &self.counted {
            println!("{prefix}skipped: {} ({}): {}", r.test, r.binary, r.reason);
        }
        for n in &self.not_counted {
            println!("{prefix}note: {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_counts_only_for_a_test_that_passed() {
        let mut p = PassedTests::default();
        p.add_text(
            "running 3 tests\ntest region::tests::a ... ok\ntest region::tests::b ... FAILED\n\
             test region::tests::c ... ignored, needs the test VM\n",
        );
        let text = "dma-1\tregion::tests::a\tno page\ndma-1\tregion::tests::b\tno page\n\
                    dma-1\tregion::tests::a\tagain\nbroken line\n";
        let s = Skips::settle(text, &mut p);
        assert_eq!(s.counted.len(), 1, "{s:?}");
        assert_eq!(s.counted[0].test, "region::tests::a");
        // b failed; the second record of a has no passing test left; one line is malformed.
        assert_eq!(s.not_counted.len(), 3, "{s:?}");
        assert!(s.not_counted[0].contains("region::tests::b"), "{s:?}");
    }

    #[test]
    fn a_missing_file_is_no_skip() {
        let s =
            Skips::settle_file(Path::new("/nonexistent/oxpmd-skips"), &mut PassedTests::default()).unwrap();
        assert!(s.counted.is_empty() && s.not_counted.is_empty());
    }
}
