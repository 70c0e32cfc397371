//! The RFC 2544 throughput search: a binary search over the offered rate for the highest rate
//! whose trial passes, as a pure function over a "run one trial at this rate" closure.

/// One trial of a search: the rate offered, whether it passed, and what the closure returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial<T> {
    pub rate: f64,
    pub pass: bool,
    pub outcome: T,
}

/// The search's result: the highest rate that passed (0 when none did) and every trial in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Search<T> {
    pub throughput: f64,
    pub trials: Vec<Trial<T>>,
}

impl<T> Search<T> {
    /// The trial at the throughput rate (None when the throughput is 0).
    pub fn at_throughput(&self) -> Option<&Trial<T>> {
        self.trials.iter().find(|t| t.pass && t.rate == self.throughput)
    }
}

/// Most trials a search with `resolution_pct` runs: the one at the maximum, then one per halving
/// of [0, max] until it is at most `resolution_pct` percent of max wide.
pub fn max_trials(resolution_pct: f64) -> usize {
    1 + (100.0 / resolution_pct).log2().ceil().max(0.0) as usize
}

/// Searches [0, `max_rate`] for the highest rate whose trial passes: first `max_rate` itself
/// (passing there ends the search), then halving the interval between the highest rate passed
/// (`low`, from 0) and the lowest failed (`high`) until `high - low` is at most `resolution_pct`
/// percent of `max_rate`. `trial(rate)` runs one trial and returns whether it passed and its
/// outcome; its error ends the search.
pub fn throughput_search<T, E>(
    max_rate: f64,
    resolution_pct: f64,
    mut trial: impl FnMut(f64) -> Result<(bool, T), E>,
) -> Result<Search<T>, E> {
    let mut trials = Vec::new();
    let mut run = |rate: f64, trials: &mut Vec<Trial<T>>| -> Result<bool, E> {
        let (pass, outcome) = trial(rate)?;
        trials.push(Trial { rate, pass, outcome });
        Ok(pass)
    };
    if run(max_rate, &mut trials)? {
        return Ok(Search {
            throughput: max_rate,
            trials,
        });
    }
    let width = max_rate * resolution_pct / 100.0;
    let (mut low, mut high) = (0.0, max_rate);
    // The bound also stops a search whose width cannot shrink (a rounding corner).
    while high - low > width && trials.len() < max_trials(resolution_pct) {
        let mid = (low + high) / 2.0;
        if run(mid, &mut trials)? {
            low = mid;
        } else {
            high = mid;
        }
    }
    Ok(Search {
        throughput: low,
        trials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dut_passing_below(x: f64) -> impl FnMut(f64) -> Result<(bool, ()), ()> {
        move |rate| Ok((rate <= x, ()))
    }

    #[test]
    fn finds_the_limit_within_the_resolution() {
        for (x, res) in [
            (23_000.0, 1.0),
            (744_000.0, 1.0),
            (2_000.0, 0.1),
            (500_000.0, 10.0),
        ] {
            let max = 1_488_095.2;
            let s = throughput_search(max, res, dut_passing_below(x)).unwrap();
            assert!(s.throughput <= x, "{x}: {} above the limit", s.throughput);
            assert!(
                x - s.throughput <= max * res / 100.0,
                "{x}: {} too far below",
                s.throughput
            );
            assert!(
                s.trials.len() <= max_trials(res),
                "{x}: {} trials",
                s.trials.len()
            );
            assert_eq!(s.trials[0].rate, max, "the maximum is tried first");
            let t = s.at_throughput().expect("a trial at the throughput");
            assert!(t.pass);
        }
    }

    #[test]
    fn passing_at_the_maximum_ends_at_once() {
        let s = throughput_search(81_274.0, 1.0, dut_passing_below(1e9)).unwrap();
        assert_eq!(s.throughput, 81_274.0);
        assert_eq!(s.trials.len(), 1);
    }

    #[test]
    fn failing_everywhere_gives_zero() {
        let s = throughput_search(1_000_000.0, 1.0, dut_passing_below(-1.0)).unwrap();
        assert_eq!(s.throughput, 0.0);
        assert!(s.trials.iter().all(|t| !t.pass));
        assert_eq!(s.trials.len(), max_trials(1.0));
        assert!(s.at_throughput().is_none());
        // Every trial halves towards 0: the last one is within the resolution of 0.
        assert!(s.trials.last().unwrap().rate <= 1_000_000.0 * 0.01);
    }

    #[test]
    fn the_number_of_trials_is_bounded_by_the_resolution() {
        for res in [0.01, 0.5, 1.0, 3.0, 10.0, 12.5, 50.0, 100.0] {
            let bound = (1.0f64 / (res / 100.0)).log2() + 2.0;
            assert!(
                max_trials(res) as f64 <= bound,
                "{res}: {} > {bound}",
                max_trials(res)
            );
            for x in [0.3, 0.5, 0.77, 0.99] {
                let s = throughput_search(1.0, res, dut_passing_below(x)).unwrap();
                assert!(
                    s.trials.len() <= max_trials(res),
                    "res {res} limit {x}: {} trials",
                    s.trials.len()
                );
            }
        }
        assert_eq!(max_trials(100.0), 1);
        assert_eq!(max_trials(1.0), 8);
    }

    #[test]
    fn a_noisy_dut_still_ends_bounded_at_its_best_passing_trial() {
        // A DUT that passes below 60 % of max, but fails one trial in three at random, and passes
        // one in five above its limit.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % 15
        };
        for _ in 0..200 {
            let s = throughput_search(100_000.0, 1.0, |rate| {
                let r = rnd();
                let pass = if rate <= 60_000.0 { r % 3 != 0 } else { r % 5 == 0 };
                Ok::<_, ()>((pass, ()))
            })
            .unwrap();
            assert!(s.trials.len() <= max_trials(1.0));
            let best = s
                .trials
                .iter()
                .filter(|t| t.pass)
                .map(|t| t.rate)
                .fold(0.0, f64::max);
            assert_eq!(
                s.throughput, best,
                "the throughput is the highest rate that passed"
            );
        }
    }

    #[test]
    fn a_trial_error_ends_the_search() {
        let mut n = 0;
        let r = throughput_search(1000.0, 1.0, |_| {
            n += 1;
            if n == 3 { Err("port gone") } else { Ok((false, ())) }
        });
        assert_eq!(r, Err("port gone"));
        assert_eq!(n, 3);
    }
}
