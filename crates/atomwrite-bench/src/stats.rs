//! Small statistics helpers: medians and percentiles over samples.

use serde::Serialize;
use std::time::Duration;

/// Summary of a set of timing samples, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (average of the two middle samples for even `n`).
    pub median_us: f64,
    /// 90th percentile (nearest rank).
    pub p90_us: f64,
    /// Fastest sample.
    pub min_us: f64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

impl Summary {
    /// Summarise samples; returns `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(|a, b| a.total_cmp(b));
        let n = us.len();
        let median = if n % 2 == 1 {
            us[n / 2]
        } else {
            (us[n / 2 - 1] + us[n / 2]) / 2.0
        };
        let rank = ((0.9 * n as f64).ceil() as usize).clamp(1, n) - 1;
        Some(Summary {
            n,
            median_us: median,
            p90_us: us[rank],
            min_us: us[0],
            mean_us: us.iter().sum::<f64>() / n as f64,
        })
    }
}

/// Human formatting of a microsecond quantity.
pub fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.3} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.1} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_millis(x)).collect()
    }

    #[test]
    fn median_odd_and_even() {
        let s = Summary::of(&ms(&[5, 1, 3])).unwrap();
        assert_eq!(s.median_us, 3000.0);
        let s = Summary::of(&ms(&[4, 1, 3, 2])).unwrap();
        assert_eq!(s.median_us, 2500.0);
        assert_eq!(s.min_us, 1000.0);
    }

    #[test]
    fn p90_nearest_rank() {
        let v: Vec<u64> = (1..=10).collect();
        let s = Summary::of(&ms(&v)).unwrap();
        assert_eq!(s.p90_us, 9000.0);
        let s = Summary::of(&ms(&[7])).unwrap();
        assert_eq!(s.p90_us, 7000.0);
    }

    #[test]
    fn empty_is_none() {
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_us(12.34), "12.3 µs");
        assert_eq!(fmt_us(1234.0), "1.23 ms");
        assert_eq!(fmt_us(2_500_000.0), "2.500 s");
    }
}
