//! Comparing two VMMs measured in interleaved pairs (A B A B ... in one machine): each
//! side's median, the ratio of the medians, and a 95 % bootstrap interval for that ratio.
//! A side is "ahead" only when the whole interval lies beyond 1.0 in its favour; an
//! interval that contains 1.0 is "level", however far the point estimate is from it.
//!
//! The bootstrap resamples whole pairs (the two runs of a pair share the machine's state
//! at that moment), a fixed number of times, from a fixed seed: the same measurements
//! always give the same interval.

use std::fmt;

/// How many bootstrap resamples an interval is computed from.
pub const RESAMPLES: usize = 10_000;
/// The seed of the resampling generator (any fixed value: it makes reports repeatable).
const SEED: u64 = 0x5eed_1e55_a11c_e5ed;
/// At least this many pairs are needed for a verdict; fewer are reported, not judged.
pub const MIN_PAIRS: usize = 5;

/// The median of `values` (the mean of the middle two for an even count); `None` when
/// empty or when a value is not a finite number.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 0 {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// Which way a metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// IOPS, bandwidth, packets per second.
    Higher,
    /// Latency, exits or system calls per I/O, CPU time.
    Lower,
}

/// What the interval says about A against B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The whole interval is on A's better side of 1.0.
    Ahead,
    /// The interval contains 1.0.
    Level,
    /// The whole interval is on A's worse side of 1.0.
    Behind,
    /// Fewer than [`MIN_PAIRS`] pairs: reported, not judged.
    TooFewPairs,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ahead => "ahead",
            Verdict::Level => "level",
            Verdict::Behind => "behind",
            Verdict::TooFewPairs => "too few pairs",
        })
    }
}

/// A against B over interleaved pairs.
#[derive(Clone, Debug, PartialEq)]
pub struct PairedRatio {
    pub pairs: usize,
    pub median_a: f64,
    pub median_b: f64,
    /// median(A) / median(B).
    pub ratio: f64,
    /// The 2.5th and 97.5th percentiles of the bootstrapped ratio.
    pub low: f64,
    pub high: f64,
}

impl PairedRatio {
    /// Compares A with B from `pairs` of (A, B) measurements taken one after the other.
    /// `None` when there are no pairs, a value is not finite, or B's median is not positive.
    pub fn from_pairs(pairs: &[(f64, f64)]) -> Option<Self> {
        let a: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let b: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        let median_a = median(&a)?;
        let median_b = median(&b)?;
        if median_b <= 0.0 {
            return None;
        }
        let mut rng = SplitMix64(SEED);
        let mut ratios = Vec::with_capacity(RESAMPLES);
        let mut sample_a = vec![0.0; pairs.len()];
        let mut sample_b = vec![0.0; pairs.len()];
        for _ in 0..RESAMPLES {
            for i in 0..pairs.len() {
                let pick = rng.below(pairs.len());
                sample_a[i] = a[pick];
                sample_b[i] = b[pick];
            }
            let (ma, mb) = (median(&sample_a)?, median(&sample_b)?);
            // A resample whose B median is zero has no ratio: it is left out.
            if mb > 0.0 {
                ratios.push(ma / mb);
            }
        }
        ratios.sort_by(f64::total_cmp);
        Some(Self {
            pairs: pairs.len(),
            median_a,
            median_b,
            ratio: median_a / median_b,
            low: quantile(&ratios, 0.025)?,
            high: quantile(&ratios, 0.975)?,
        })
    }

    pub fn verdict(&self, better: Better) -> Verdict {
        if self.pairs < MIN_PAIRS {
            return Verdict::TooFewPairs;
        }
        let (above, below) = (self.low > 1.0, self.high < 1.0);
        match (better, above, below) {
            (Better::Higher, true, _) | (Better::Lower, _, true) => Verdict::Ahead,
            (Better::Higher, _, true) | (Better::Lower, true, _) => Verdict::Behind,
            _ => Verdict::Level,
        }
    }
}

/// The `q` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied()
}

/// SplitMix64: a small, well-mixed generator; enough for resampling indices.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (n > 0), without modulo bias worth the name for the
    /// pair counts used here (Lemire's multiply-shift).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn a_clear_lead_is_ahead_and_its_interval_is_above_one() {
        let pairs: Vec<(f64, f64)> = (0..7)
            .map(|i| (120.0 + i as f64, 100.0 + (i % 3) as f64))
            .collect();
        let r = PairedRatio::from_pairs(&pairs).unwrap();
        assert!(
            r.low > 1.0 && r.low <= r.ratio && r.ratio <= r.high,
            "{r:?}"
        );
        assert_eq!(r.verdict(Better::Higher), Verdict::Ahead);
        // For a lower-is-better metric the same numbers mean A is behind.
        assert_eq!(r.verdict(Better::Lower), Verdict::Behind);
    }

    #[test]
    fn overlapping_noise_is_level_even_with_a_point_estimate_above_one() {
        // A's median is higher, but the pairs disagree with each other.
        let pairs = [
            (110.0, 100.0),
            (90.0, 105.0),
            (115.0, 95.0),
            (95.0, 110.0),
            (108.0, 100.0),
            (92.0, 104.0),
        ];
        let r = PairedRatio::from_pairs(&pairs).unwrap();
        assert!(r.low < 1.0 && r.high > 1.0, "{r:?}");
        assert_eq!(r.verdict(Better::Higher), Verdict::Level);
    }

    #[test]
    fn fewer_than_five_pairs_get_no_verdict() {
        let pairs = [
            (200.0, 100.0),
            (210.0, 100.0),
            (205.0, 100.0),
            (199.0, 101.0),
        ];
        let r = PairedRatio::from_pairs(&pairs).unwrap();
        assert_eq!(r.verdict(Better::Higher), Verdict::TooFewPairs);
    }

    #[test]
    fn the_same_measurements_give_the_same_interval() {
        let pairs = [(5.0, 4.0), (6.0, 4.5), (5.5, 5.0), (4.8, 4.4), (5.2, 4.1)];
        assert_eq!(
            PairedRatio::from_pairs(&pairs),
            PairedRatio::from_pairs(&pairs)
        );
    }

    #[test]
    fn no_ratio_without_a_positive_reference() {
        assert_eq!(PairedRatio::from_pairs(&[]), None);
        assert_eq!(PairedRatio::from_pairs(&[(1.0, 0.0), (2.0, 0.0)]), None);
    }
}
