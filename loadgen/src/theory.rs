//! Queueing theory for the reference lines: what random dispatch, the power of two choices and
//! one pooled queue would give with Poisson arrivals and exponential service.
//!
//! Every time here is in units of the mean service time (service rate 1), and `rho` is the load
//! per slot (arrival rate / (slots x service rate)), in `[0, 1)`.
//!
//! - Random dispatch to single-slot servers: each is an M/M/1 queue, sojourn ~ Exp(1 - rho).
//! - Power of d choices with n -> infinity (the supermarket model; Mitzenmacher 1996,
//!   Vvedenskaya, Dobrushin and Karpelevich 1996): the fraction of queues holding at least k
//!   jobs is `rho^((d^k - 1)/(d - 1))`. An arrival joins the shortest of d, so it finds at least
//!   k jobs ahead with probability `s_k^d`; with memoryless service its sojourn is then a sum of
//!   k + 1 unit exponentials (an Erlang distribution).
//! - M/M/c (Erlang C): one queue in front of all c slots; no placement onto separate queues can
//!   beat it, so it is the floor.

/// The largest number of terms summed in a series before giving up on convergence; far more
/// than any `rho < 1` needs (the supermarket series converges doubly exponentially).
const MAX_TERMS: usize = 10_000;

/// Mean sojourn of an M/M/1 queue: `1 / (1 - rho)`.
pub fn mm1_mean(rho: f64) -> f64 {
    1.0 / (1.0 - rho)
}

/// `P(T > t)` for the sojourn T of an M/M/1 queue: `exp(-(1 - rho) t)`.
pub fn mm1_ccdf(rho: f64, t: f64) -> f64 {
    (-(1.0 - rho) * t.max(0.0)).exp()
}

/// The q-quantile of the M/M/1 sojourn: `-ln(1 - q) / (1 - rho)`; p99 is `ln(100) / (1 - rho)`.
pub fn mm1_quantile(rho: f64, q: f64) -> f64 {
    -(1.0 - q).ln() / (1.0 - rho)
}

/// The probability that an arrival in the supermarket model (d choices, n -> infinity) finds at
/// least `k` jobs at the queue it joins: `s_k^d` with `s_k = rho^((d^k - 1)/(d - 1))`, which is
/// `rho^((d^(k+1) - d)/(d - 1))`.
fn supermarket_at_least(rho: f64, d: u32, k: u32) -> f64 {
    let d = f64::from(d);
    let exponent = (d.powf(f64::from(k) + 1.0) - d) / (d - 1.0);
    rho.powf(exponent)
}

/// Mean sojourn with d choices as n -> infinity: `sum_{i >= 1} rho^((d^i - d)/(d - 1))`.
/// `d` must be at least 2.
pub fn supermarket_mean(rho: f64, d: u32) -> f64 {
    let mut sum = 0.0;
    for k in 0..MAX_TERMS as u32 {
        let term = supermarket_at_least(rho, d, k);
        sum += term;
        if term < 1e-16 {
            break;
        }
    }
    sum
}

/// `P(T > t)` for the sojourn in the supermarket model (d choices, n -> infinity).
pub fn supermarket_ccdf(rho: f64, d: u32, t: f64) -> f64 {
    let t = t.max(0.0);
    let mut total = 0.0;
    // P(Erlang(k + 1) > t) = e^-t * sum_{j <= k} t^j / j!, built up term by term.
    let mut poisson_term = (-t).exp();
    let mut erlang_tail = 0.0;
    for k in 0..MAX_TERMS as u32 {
        erlang_tail += poisson_term;
        poisson_term *= t / (f64::from(k) + 1.0);
        let at_least_k = supermarket_at_least(rho, d, k);
        let exactly_k = at_least_k - supermarket_at_least(rho, d, k + 1);
        total += exactly_k * erlang_tail.min(1.0);
        if at_least_k < 1e-16 {
            break;
        }
    }
    total.clamp(0.0, 1.0)
}

/// Erlang's C formula: the probability that an arrival waits in an M/M/c queue with offered
/// load `a = c rho` (in units of the service rate). Computed through the Erlang B recursion,
/// which stays accurate for large c where `a^c / c!` would overflow.
pub fn erlang_c(c: u32, rho: f64) -> f64 {
    let a = f64::from(c) * rho;
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (f64::from(k) + a * b);
    }
    let c = f64::from(c);
    c * b / (c - a * (1.0 - b))
}

/// Mean sojourn in M/M/c: `1 + C / (c - a)`.
pub fn mmc_mean(c: u32, rho: f64) -> f64 {
    let a = f64::from(c) * rho;
    1.0 + erlang_c(c, rho) / (f64::from(c) - a)
}

/// `P(T > t)` for the sojourn in M/M/c. The wait is 0 with probability `1 - C`, otherwise
/// Exp(theta) with `theta = c - a`; the service adds an independent Exp(1).
pub fn mmc_ccdf(c: u32, rho: f64, t: f64) -> f64 {
    let t = t.max(0.0);
    let wait_prob = erlang_c(c, rho);
    let theta = f64::from(c) * (1.0 - rho);
    // P(Exp(theta) + Exp(1) > t), the hypoexponential tail; its two-rate formula is 0/0 at
    // theta = 1, where the tail is (1 + t) e^-t.
    let both = if (theta - 1.0).abs() < 1e-9 {
        (1.0 + t) * (-t).exp()
    } else {
        (theta * (-t).exp() - (-theta * t).exp()) / (theta - 1.0)
    };
    ((1.0 - wait_prob) * (-t).exp() + wait_prob * both).clamp(0.0, 1.0)
}

/// The q-quantile of a distribution given by its (non-increasing) tail `ccdf`: the smallest t
/// with `ccdf(t) <= 1 - q`, found by bisection to 1e-9 relative precision.
pub fn quantile(ccdf: impl Fn(f64) -> f64, q: f64) -> f64 {
    let target = 1.0 - q;
    let mut hi = 1.0;
    let mut doublings = 0;
    while ccdf(hi) > target && doublings < 200 {
        hi *= 2.0;
        doublings += 1;
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if ccdf(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-9 * hi {
            break;
        }
    }
    hi
}

/// The theory's reference numbers at one load, in units of the mean service time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Reference {
    /// Load per slot.
    pub rho: f64,
    /// Slots in the pool (the c of M/M/c).
    pub slots: u32,
    /// Random dispatch (M/M/1): mean sojourn.
    pub random_mean: f64,
    /// Random dispatch (M/M/1): p99 sojourn.
    pub random_p99: f64,
    /// Two choices, n -> infinity: mean sojourn.
    pub two_choices_mean: f64,
    /// Two choices, n -> infinity: p99 sojourn.
    pub two_choices_p99: f64,
    /// The pooled floor M/M/c: mean sojourn.
    pub pooled_mean: f64,
    /// The pooled floor M/M/c: p99 sojourn.
    pub pooled_p99: f64,
}

impl Reference {
    /// The reference numbers at load `rho` (in `[0, 1)`) over `slots` slots.
    pub fn at(rho: f64, slots: u32) -> Self {
        let slots = slots.max(1);
        Reference {
            rho,
            slots,
            random_mean: mm1_mean(rho),
            random_p99: mm1_quantile(rho, 0.99),
            two_choices_mean: supermarket_mean(rho, 2),
            two_choices_p99: quantile(|t| supermarket_ccdf(rho, 2, t), 0.99),
            pooled_mean: mmc_mean(slots, rho),
            pooled_p99: quantile(|t| mmc_ccdf(slots, rho, t), 0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RHOS: [f64; 4] = [0.5, 0.8, 0.9, 0.95];

    fn close(actual: f64, expected: f64, decimals: i32) {
        let tolerance = 0.5 * 10f64.powi(-decimals) + 1e-12;
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} is not {expected} to {decimals} decimals"
        );
    }

    /// The reference table in DESIGN.md, to the digits it gives.
    #[test]
    fn matches_the_design_reference_table() {
        let random = [2.00, 5.00, 10.0, 20.0];
        let two_choices = [1.266, 1.947, 2.614, 3.383];
        let mm8 = [1.015, 1.286, 1.877, 3.110];
        for (i, rho) in RHOS.into_iter().enumerate() {
            close(mm1_mean(rho), random[i], 2);
            close(supermarket_mean(rho, 2), two_choices[i], 3);
            close(mmc_mean(8, rho), mm8[i], 3);
        }
    }

    #[test]
    fn erlang_c_matches_known_values() {
        // One server: the probability of waiting is rho.
        close(erlang_c(1, 0.7), 0.7, 12);
        // Two servers, a = 1: C = (1/2 * 2) / (1 + 1 + 1) = 1/3.
        close(erlang_c(2, 0.5), 1.0 / 3.0, 12);
        // M/M/1 is M/M/c with c = 1.
        close(mmc_mean(1, 0.9), mm1_mean(0.9), 9);
        // Large c does not overflow and pools well.
        let c = erlang_c(500, 0.9);
        assert!(c.is_finite() && (0.0..1.0).contains(&c), "{c}");
    }

    #[test]
    fn tails_integrate_to_the_means() {
        // E[T] = integral of P(T > t) dt: the tails and the mean formulas must agree.
        for rho in RHOS {
            let integral = |ccdf: &dyn Fn(f64) -> f64| {
                let step = 0.005;
                (0..40_000)
                    .map(|i| ccdf((f64::from(i) + 0.5) * step) * step)
                    .sum::<f64>()
            };
            let mm1 = integral(&|t| mm1_ccdf(rho, t));
            let two = integral(&|t| supermarket_ccdf(rho, 2, t));
            let mm8 = integral(&|t| mmc_ccdf(8, rho, t));
            assert!((mm1 - mm1_mean(rho)).abs() < 1e-3 * mm1, "{rho}: {mm1}");
            assert!(
                (two - supermarket_mean(rho, 2)).abs() < 1e-3 * two,
                "{rho}: {two}"
            );
            assert!((mm8 - mmc_mean(8, rho)).abs() < 1e-3 * mm8, "{rho}: {mm8}");
        }
    }

    #[test]
    fn tails_start_at_one_and_fall() {
        for rho in RHOS {
            for ccdf in [
                &(|t| mm1_ccdf(rho, t)) as &dyn Fn(f64) -> f64,
                &|t| supermarket_ccdf(rho, 2, t),
                &|t| mmc_ccdf(8, rho, t),
            ] {
                close(ccdf(0.0), 1.0, 9);
                let mut last = 1.0;
                for i in 1..200 {
                    let p = ccdf(f64::from(i) * 0.25);
                    assert!(p <= last + 1e-12, "tail rises at {i}");
                    last = p;
                }
                assert!(last < 0.5);
            }
        }
    }

    #[test]
    fn quantiles_invert_the_tail() {
        close(mm1_quantile(0.9, 0.99), 100f64.ln() / 0.1, 9);
        close(
            quantile(|t| mm1_ccdf(0.9, t), 0.99),
            mm1_quantile(0.9, 0.99),
            6,
        );
        let r = Reference::at(0.9, 8);
        // The floor is below two choices, which is below random, for both statistics.
        assert!(r.pooled_mean < r.two_choices_mean && r.two_choices_mean < r.random_mean);
        assert!(r.pooled_p99 < r.two_choices_p99 && r.two_choices_p99 < r.random_p99);
        close(mmc_ccdf(8, 0.9, r.pooled_p99), 0.01, 9);
    }
}
