//! Rate control: how many frames a rate allows at a point in time.

use std::time::Duration;

/// Frames that `rate` frames per second allow after `elapsed` when `sent` have gone: the
/// schedule is fixed from the start (frame k is due at k / rate), so a late burst catches up
/// instead of lowering the average rate.
pub fn allowed_now(rate: f64, elapsed: Duration, sent: u64) -> u64 {
    let allowed = (elapsed.as_secs_f64() * rate) as u64 + 1;
    allowed.saturating_sub(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_fixed_from_the_start() {
        // Frame 0 is due at once; at 1 ms, 1000 pps allows frames 0 and 1.
        assert_eq!(allowed_now(1000.0, Duration::ZERO, 0), 1);
        assert_eq!(allowed_now(1000.0, Duration::from_millis(1), 0), 2);
        assert_eq!(allowed_now(1000.0, Duration::from_millis(1), 2), 0);
        // Behind schedule: the backlog is allowed at once.
        assert_eq!(allowed_now(1000.0, Duration::from_secs(1), 10), 991);
    }
}
