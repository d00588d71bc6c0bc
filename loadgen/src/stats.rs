//! Statistics of a sample: exact percentiles (nearest rank), mean, and the standard error of
//! the mean by batch means.
//!
//! The samples are kept whole rather than in an HDR histogram: a run has thousands of jobs, not
//! billions, so sorting them is cheap, the percentiles are exact, and the chart needs every
//! sample anyway to draw the distribution.

use serde::Serialize;

/// The nearest-rank q-quantile of an ascending sample: the smallest value with at least a
/// fraction `q` of the sample at or below it. `None` for an empty sample.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // ceil(q n) computed with a little slack so that 0.9 * 1000 is 900, not 900.0000000001.
    let rank = ((q.clamp(0.0, 1.0) * n as f64) - 1e-9).ceil().max(1.0) as usize;
    Some(sorted[rank.min(n) - 1])
}

/// The standard error of the mean of a sample taken in time order, by the method of batch
/// means: the sample is cut into `batches` consecutive batches and the spread of their means
/// tells how much the overall mean would vary. Unlike `stddev / sqrt(n)` this stays honest when
/// neighbouring samples are correlated, as the sojourns of jobs queued behind each other are.
/// `None` when there are fewer than two samples per batch.
pub fn batch_means_stderr(in_order: &[f64], batches: usize) -> Option<f64> {
    if batches < 2 || in_order.len() < 2 * batches {
        return None;
    }
    let size = in_order.len() / batches;
    let means: Vec<f64> = in_order
        .chunks_exact(size)
        .take(batches)
        .map(|b| b.iter().sum::<f64>() / size as f64)
        .collect();
    let grand = means.iter().sum::<f64>() / batches as f64;
    let variance = means.iter().map(|m| (m - grand).powi(2)).sum::<f64>() / (batches as f64 - 1.0);
    Some((variance / batches as f64).sqrt())
}

/// How many batches [`Summary::of`] uses for the standard error of the mean.
pub const BATCHES: usize = 20;

/// A sample summed up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// How many values.
    pub count: usize,
    /// Their mean.
    pub mean: f64,
    /// The standard error of the mean (batch means over [`BATCHES`] batches in the order the
    /// values were given); `None` below 40 values.
    pub mean_stderr: Option<f64>,
    /// The smallest.
    pub min: f64,
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The 99.9th percentile.
    pub p999: f64,
    /// The largest.
    pub max: f64,
}

impl Summary {
    /// The summary of `values`, given in the order they happened (for the standard error);
    /// `None` for an empty sample. Values that are not finite are ignored.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let in_order: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if in_order.is_empty() {
            return None;
        }
        let mut sorted = in_order.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |q| percentile(&sorted, q).unwrap_or(f64::NAN);
        Some(Summary {
            count: sorted.len(),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            mean_stderr: batch_means_stderr(&in_order, BATCHES),
            min: sorted[0],
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: sorted[sorted.len() - 1],
        })
    }

    /// Every statistic divided by `unit` (e.g. into units of the mean service time).
    pub fn scaled(&self, unit: f64) -> Summary {
        Summary {
            count: self.count,
            mean: self.mean / unit,
            mean_stderr: self.mean_stderr.map(|s| s / unit),
            min: self.min / unit,
            p50: self.p50 / unit,
            p90: self.p90 / unit,
            p99: self.p99 / unit,
            p999: self.p999 / unit,
            max: self.max / unit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_thousand() {
        let sample: Vec<f64> = (1..=1000).map(f64::from).collect();
        let s = Summary::of(&sample).unwrap();
        assert_eq!(s.count, 1000);
        assert_eq!(
            (s.min, s.p50, s.p90, s.p99, s.p999, s.max),
            (1.0, 500.0, 900.0, 990.0, 999.0, 1000.0)
        );
        assert_eq!(s.mean, 500.5);
    }

    #[test]
    fn percentiles_by_nearest_rank_on_a_small_unsorted_sample() {
        // Sorted: 15 20 35 40 50. Nearest rank: p30 is the 2nd (ceil 1.5), p40 the 2nd, p50 the
        // 3rd, p100 the 5th (the textbook example).
        let s = [35.0, 20.0, 15.0, 50.0, 40.0];
        let Summary { p50, p90, max, .. } = Summary::of(&s).unwrap();
        let mut sorted = s.to_vec();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(percentile(&sorted, 0.3), Some(20.0));
        assert_eq!(percentile(&sorted, 0.4), Some(20.0));
        assert_eq!((p50, p90, max), (35.0, 50.0, 50.0));
        assert_eq!(percentile(&sorted, 0.0), Some(15.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn values_that_are_not_finite_are_ignored() {
        let s = Summary::of(&[1.0, f64::NAN, 3.0, f64::INFINITY]).unwrap();
        assert_eq!((s.count, s.mean, s.max), (2, 2.0, 3.0));
    }

    #[test]
    fn batch_means_see_what_independent_samples_hide() {
        // Independent-looking alternation: batches of 10 all have mean 0.5, so no error.
        let alternating: Vec<f64> = (0..200).map(|i| f64::from(i % 2)).collect();
        assert_eq!(batch_means_stderr(&alternating, 20), Some(0.0));
        // The same values in two long runs: the batch means are 0 or 1, and the error of the
        // mean is large, as it should be for a sample this correlated.
        let runs: Vec<f64> = (0..200).map(|i| f64::from(u8::from(i >= 100))).collect();
        let se = batch_means_stderr(&runs, 20).unwrap();
        // Ten batches of 0 and ten of 1: variance 20/(4*19), error sqrt(that / 20).
        assert!((se - (20.0 / 76.0 / 20.0f64).sqrt()).abs() < 1e-12, "{se}");
        assert_eq!(batch_means_stderr(&runs[..39], 20), None);
    }

    #[test]
    fn scaling_divides_every_statistic() {
        let s = Summary::of(&(1..=100).map(f64::from).collect::<Vec<_>>()).unwrap();
        let t = s.scaled(10.0);
        assert_eq!((t.count, t.p50, t.max, t.mean), (100, 5.0, 10.0, 5.05));
    }
}
