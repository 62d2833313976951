//! [`RequeueBudget`]: how many failed runs may be requeued, per test and per build.
//!
//! Requeueing a failure for another worker is how ciq tells flaky from broken, but a broken
//! build must not requeue everything: the build budget caps requeues at a fraction of the suite.

/// Limits on requeues.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequeueBudget {
    /// Most times one test may be put back.
    pub max_requeues: u32,
    /// Fraction of the suite that may be requeued in all (`0.1` = one test in ten).
    pub tolerance: f64,
}

impl RequeueBudget {
    /// The build-wide number of requeues for a suite of `total` tests: `ceil(tolerance x
    /// total)`, so any positive tolerance allows at least one.
    pub fn build_limit(&self, total: usize) -> u64 {
        if self.max_requeues == 0 {
            return 0;
        }
        (self.tolerance * total as f64).ceil().max(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_limit_rounds_up_and_respects_zero() {
        let budget = RequeueBudget {
            max_requeues: 1,
            tolerance: 0.1,
        };
        assert_eq!(budget.build_limit(3), 1);
        assert_eq!(budget.build_limit(20), 2);
        assert_eq!(budget.build_limit(21), 3);
        let none = RequeueBudget {
            max_requeues: 0,
            tolerance: 0.5,
        };
        assert_eq!(none.build_limit(100), 0);
        let no_tolerance = RequeueBudget {
            max_requeues: 3,
            tolerance: 0.0,
        };
        assert_eq!(no_tolerance.build_limit(100), 0);
    }
}
