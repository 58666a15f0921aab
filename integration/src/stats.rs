//! Figures for the benchmarks: percentiles, and how far a ratio of medians can be trusted.
//!
//! The pod benchmarks run their sides in rounds (one pod per side each round, order
//! rotating), so a slow stretch of the machine hits every side of a round alike. A ratio of
//! two medians from one run still moves by a few hundredths between runs; a goal such as
//! "start ≤ 1.06×" is only met when the whole interval is below it. [`ratio_interval`]
//! gives that interval by resampling whole rounds (a paired bootstrap).

use std::time::Duration;

use plexus_testkit::rng::Rng;

/// The `p` quantile (0..=1) of `sorted`: the sample at index `(n - 1) * p`, rounded (the
/// upper of the two middle samples for a median of an even count); `sorted` must not be
/// empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let idx = ((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// The median of `samples` (sorted here, in place).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    percentile(samples, 0.5)
}

/// A ratio of medians with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioInterval {
    /// median(side) / median(base) over all rounds.
    pub ratio: f64,
    /// 2.5 % and 97.5 % quantiles of the ratio over the resamples.
    pub low: f64,
    pub high: f64,
}

impl std::fmt::Display for RatioInterval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3}x (95% {:.3}-{:.3})",
            self.ratio, self.low, self.high
        )
    }
}

impl RatioInterval {
    /// Against a goal "at most `goal`": met when the whole interval is at or below it, not
    /// met when the whole interval is above it, otherwise undecided by this run.
    pub fn verdict(&self, goal: f64) -> &'static str {
        if self.high <= goal {
            "met"
        } else if self.low > goal {
            "NOT met"
        } else {
            "undecided: the interval spans the goal"
        }
    }
}

/// median(side) / median(base); `None` for a zero base median.
fn ratio_of_medians(mut base: Vec<Duration>, mut side: Vec<Duration>) -> Option<f64> {
    let mb = median(&mut base).as_secs_f64();
    (mb > 0.0).then(|| median(&mut side).as_secs_f64() / mb)
}

/// Resamples drawn by [`ratio_interval`].
pub const RESAMPLES: usize = 2000;

/// median(side) / median(base) and its 95 % interval from [`RESAMPLES`] resamples of whole
/// rounds: `base[i]` and `side[i]` must come from the same round `i`. The generator is
/// seeded, so the same samples give the same interval. `None` with fewer than two rounds
/// or a zero median.
pub fn ratio_interval(base: &[Duration], side: &[Duration]) -> Option<RatioInterval> {
    assert_eq!(base.len(), side.len(), "one sample per side per round");
    let rounds = base.len();
    if rounds < 2 {
        return None;
    }
    let point = ratio_of_medians(base.to_vec(), side.to_vec())?;
    let mut rng = Rng::new(0x5eed_ba5e_0fc0_ffee);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .filter_map(|_| {
            let picks: Vec<usize> = (0..rounds)
                .map(|_| rng.below(rounds as u64) as usize)
                .collect();
            ratio_of_medians(
                picks.iter().map(|&i| base[i]).collect(),
                picks.iter().map(|&i| side[i]).collect(),
            )
        })
        .collect();
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    Some(RatioInterval {
        ratio: point,
        low: at(0.025),
        high: at(0.975),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_by_rounded_index() {
        let t = ms(&[10, 20, 30, 40, 50]);
        assert_eq!(percentile(&t, 0.5), Duration::from_millis(30));
        assert_eq!(percentile(&t, 0.0), Duration::from_millis(10));
        assert_eq!(percentile(&t, 1.0), Duration::from_millis(50));
        assert_eq!(percentile(&t, 0.9), Duration::from_millis(50));
        let mut u = ms(&[3, 1, 2]);
        assert_eq!(median(&mut u), Duration::from_millis(2));
    }

    #[test]
    fn interval_holds_the_ratio_and_narrows_with_more_rounds() {
        // Base 100 ms ± noise, the side 5 % slower with the same noise per round.
        let noise = |i: u64| (i * 37) % 21;
        let make = |n: u64| {
            let base: Vec<Duration> = (0..n)
                .map(|i| Duration::from_millis(90 + noise(i)))
                .collect();
            let side: Vec<Duration> = base.iter().map(|b| b.mul_f64(1.05)).collect();
            (base, side)
        };
        let (b, s) = make(30);
        let small = ratio_interval(&b, &s).unwrap();
        assert!((small.ratio - 1.05).abs() < 1e-9, "{small}");
        assert!(
            small.low <= small.ratio && small.ratio <= small.high,
            "{small}"
        );
        // Paired rounds with an exact 5 % difference: every resample gives 1.05.
        assert!((small.high - small.low) < 1e-9, "{small}");

        // Unpaired noise on the side: the interval has width, and shrinks with rounds.
        let jitter = |b: &[Duration]| -> Vec<Duration> {
            b.iter()
                .enumerate()
                .map(|(i, d)| d.mul_f64(1.05) + Duration::from_millis((i as u64 * 53) % 13))
                .collect()
        };
        let (b30, _) = make(30);
        let (b300, _) = make(300);
        let w30 = ratio_interval(&b30, &jitter(&b30)).unwrap();
        let w300 = ratio_interval(&b300, &jitter(&b300)).unwrap();
        assert!(w30.high - w30.low > 0.01, "{w30}");
        assert!(w300.high - w300.low < w30.high - w30.low, "{w30} vs {w300}");
        assert!(w300.low <= w300.ratio && w300.ratio <= w300.high, "{w300}");
        // Deterministic: the same samples give the same interval.
        assert_eq!(ratio_interval(&b30, &jitter(&b30)).unwrap(), w30);
    }

    #[test]
    fn too_few_rounds_or_zero_base_give_none() {
        assert_eq!(ratio_interval(&ms(&[5]), &ms(&[6])), None);
        assert_eq!(ratio_interval(&ms(&[0, 0, 0]), &ms(&[1, 2, 3])), None);
    }

    #[test]
    fn verdict_needs_the_whole_interval_on_one_side() {
        let r = |low, high| RatioInterval {
            ratio: (low + high) / 2.0,
            low,
            high,
        };
        assert_eq!(r(1.01, 1.05).verdict(1.06), "met");
        assert_eq!(r(1.01, 1.06).verdict(1.06), "met");
        assert_eq!(r(1.07, 1.09).verdict(1.06), "NOT met");
        assert!(r(1.04, 1.07).verdict(1.06).starts_with("undecided"));
    }

    #[test]
    fn display_names_the_interval() {
        let r = RatioInterval {
            ratio: 1.0523,
            low: 1.031,
            high: 1.0712,
        };
        assert_eq!(r.to_string(), "1.052x (95% 1.031-1.071)");
    }
}
