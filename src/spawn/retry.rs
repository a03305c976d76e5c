//! Failures of work done ahead of spawns (starting the spawner, making a
//! network namespace, building a root skeleton) are remembered only for a
//! while. A moment of `EMFILE` or `ENOMEM` is an error for the spawns it
//! hits, never a state the process stays in: the work is tried again after
//! a delay that doubles with each failure in a row, from 50 ms up to half a
//! second, so a lasting fault costs a try now and then, not one per spawn.

use std::time::{Duration, Instant};

/// The first delay, and the longest.
const FIRST: Duration = Duration::from_millis(50);
const LONGEST: Duration = Duration::from_millis(500);

/// Failures in a row of one piece of work.
#[derive(Clone, Debug)]
pub(crate) struct Failed {
    /// The last failure, as a sentence.
    pub why: String,
    /// How many in a row.
    pub times: u32,
    /// When the last one happened.
    pub at: Instant,
}

impl Failed {
    /// A first failure, or one more after `before`.
    pub(crate) fn after(before: Option<&Failed>, why: impl Into<String>) -> Failed {
        Failed {
            why: why.into(),
            times: before.map_or(1, |f| f.times.saturating_add(1)),
            at: Instant::now(),
        }
    }

    /// When the work may be tried again.
    pub(crate) fn retry_at(&self) -> Instant {
        self.at + delay(self.times)
    }

    /// Whether the work may be tried again now.
    pub(crate) fn due(&self) -> bool {
        Instant::now() >= self.retry_at()
    }

    /// How it stands, for `host::check`: the failure, how often, and when
    /// the next try is.
    pub(crate) fn describe(&self) -> String {
        let next = self.retry_at().saturating_duration_since(Instant::now());
        let times = match self.times {
            1 => "once".to_string(),
            n => format!("{n} times in a row"),
        };
        format!(
            "{} (failed {times}; tried again {})",
            self.why,
            if next.is_zero() {
                "at the next spawn".to_string()
            } else {
                format!("in {} ms", next.as_millis().max(1))
            }
        )
    }
}

/// The delay before the next try after `times` failures in a row.
pub(crate) fn delay(times: u32) -> Duration {
    let doublings = times.saturating_sub(1).min(16);
    (FIRST * (1u32 << doublings)).min(LONGEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_half_a_second() {
        let ms = |n| delay(n).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5)],
            [50, 100, 200, 400, 500]
        );
        assert_eq!(ms(u32::MAX), 500);
        let f = Failed::after(None, "x");
        let g = Failed::after(Some(&f), "y");
        assert_eq!((f.times, g.times, g.why.as_str()), (1, 2, "y"));
        assert!(
            !g.due() && g.describe().contains("2 times in a row"),
            "{}",
            g.describe()
        );
    }
}
