//! Queueing theory for the reference lines: what random dispatch, the power of two choices and
//! one pooled queue would give with Poisson arrivals and exponential service.
//!
//! Every time here is in units of the mean service time (service rate 1), and `rho` is the load
//! per slot (arrival rate / (slots x service rate)), in `[0, 1)`.
//!
//! - Random dispatch: with Poisson arrivals split uniformly over n nodes, each node is an
//!   M/M/c queue (c its slots) at 1/n of the arrival rate — exactly, for any n (Poisson
//!   splitting). With one slot per node that is M/M/1, sojourn ~ Exp(1 - rho).
//! - Power of d choices with n -> infinity (the supermarket model; Mitzenmacher 1996,
//!   Vvedenskaya, Dobrushin and Karpelevich 1996): the fraction of queues holding at least k
//!   jobs is `rho^((d^k - 1)/(d - 1))`. An arrival joins the shortest of d, so it finds at least
//!   k jobs ahead with probability `s_k^d`; with memoryless service its sojourn is then a sum of
//!   k + 1 unit exponentials (an Erlang distribution). This is a limit for n -> infinity, and
//!   for single-slot nodes only: no row is given for nodes with several slots.
//! - M/M/N (Erlang C) over all N = n c slots: one FIFO queue in front of every slot. With
//!   exponential service the slots busy under any placement never exceed min(jobs present, N),
//!   which the pooled queue attains, so no placement that does not know the jobs' lengths has a
//!   lower expected mean sojourn (by Little's law): it is the floor for the mean. Its p99 is the
//!   pooled queue's own, given for comparison, not a bound.
//!
//! Nothing here holds for other service-time shapes, and loadgen prints no theory rows for them.

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

/// The load per slot of each node under random dispatch: with `rho` the load per slot of the
/// whole cluster, node i takes 1/n of the arrivals onto its `c_i` slots, so its own load per
/// slot is `rho * N / (n * c_i)` (N the slots in all). `None` when some node's share is at or
/// above what its slots can run (possible only when the nodes' slot counts differ).
fn random_node_loads(rho: f64, node_slots: &[u32]) -> Option<Vec<(u32, f64)>> {
    if node_slots.is_empty() {
        return None;
    }
    let total: f64 = node_slots.iter().map(|&c| f64::from(c.max(1))).sum();
    let n = node_slots.len() as f64;
    node_slots
        .iter()
        .map(|&c| {
            let c = c.max(1);
            let load = rho * total / (n * f64::from(c));
            (load < 1.0).then_some((c, load))
        })
        .collect()
}

/// Mean sojourn under random dispatch (each job to a node chosen uniformly, Poisson arrivals):
/// by Poisson splitting node i is an M/M/c_i queue at its share of the arrivals, exactly and
/// for any number of nodes, so the mean over all jobs is the nodes' average. `None` when a node
/// is overloaded.
pub fn random_mean(rho: f64, node_slots: &[u32]) -> Option<f64> {
    let loads = random_node_loads(rho, node_slots)?;
    let n = loads.len() as f64;
    Some(loads.iter().map(|&(c, r)| mmc_mean(c, r)).sum::<f64>() / n)
}

/// `P(T > t)` for the sojourn under random dispatch: the nodes' M/M/c_i tails, averaged (a job
/// lands on each node with probability 1/n). 1 when a node is overloaded.
pub fn random_ccdf(rho: f64, node_slots: &[u32], t: f64) -> f64 {
    match random_node_loads(rho, node_slots) {
        Some(loads) => {
            let n = loads.len() as f64;
            loads.iter().map(|&(c, r)| mmc_ccdf(c, r, t)).sum::<f64>() / n
        }
        None => 1.0,
    }
}

/// One theory row of the table: a label, the mean and p99 sojourn in units of the mean service
/// time, and whether it is only a limit for n -> infinity.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What the row is, e.g. "random M/M/2" or "M/M/16 floor".
    pub label: String,
    /// Mean sojourn.
    pub mean: f64,
    /// p99 sojourn.
    pub p99: f64,
    /// True when the number is the n -> infinity limit, not the value at this n.
    pub limit: bool,
}

/// The theory's reference numbers at one load, in units of the mean service time, for Poisson
/// arrivals and exponential service over nodes with the given slot counts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Reference {
    /// Load per slot.
    pub rho: f64,
    /// Slots in all (the N of the M/M/N floor).
    pub slots: u32,
    /// Nodes.
    pub nodes: u32,
    /// Each node's slots.
    pub node_slots: Vec<u32>,
    /// Random dispatch, each node an M/M/c at 1/n of the arrivals (exact for any n): mean
    /// sojourn; absent when a node's share overloads it.
    pub random_mean: Option<f64>,
    /// Random dispatch: p99 sojourn.
    pub random_p99: Option<f64>,
    /// Two choices, the n -> infinity limit (supermarket model): mean sojourn. Only for
    /// single-slot nodes, which is what that result is about; absent otherwise.
    pub two_choices_mean: Option<f64>,
    /// Two choices, n -> infinity: p99 sojourn.
    pub two_choices_p99: Option<f64>,
    /// The pooled floor M/M/N (one FIFO queue in front of every slot): mean sojourn.
    pub pooled_mean: f64,
    /// The pooled queue M/M/N: p99 sojourn (that queue's own, not a bound).
    pub pooled_p99: f64,
}

impl Reference {
    /// The reference numbers at load per slot `rho` (in `[0, 1)`) over nodes with
    /// `node_slots[i]` slots each (a node with 0 counts as 1; no nodes counts as one node).
    pub fn at(rho: f64, node_slots: &[u32]) -> Self {
        let mut node_slots: Vec<u32> = node_slots.iter().map(|&c| c.max(1)).collect();
        if node_slots.is_empty() {
            node_slots.push(1);
        }
        let slots = node_slots
            .iter()
            .fold(0u32, |sum, &c| sum.saturating_add(c));
        let random_mean = random_mean(rho, &node_slots);
        let random_p99 = random_mean.map(|_| quantile(|t| random_ccdf(rho, &node_slots, t), 0.99));
        let single = node_slots.iter().all(|&c| c == 1);
        Reference {
            rho,
            slots,
            nodes: u32::try_from(node_slots.len()).unwrap_or(u32::MAX),
            random_mean,
            random_p99,
            two_choices_mean: single.then(|| supermarket_mean(rho, 2)),
            two_choices_p99: single.then(|| quantile(|t| supermarket_ccdf(rho, 2, t), 0.99)),
            pooled_mean: mmc_mean(slots, rho),
            pooled_p99: quantile(|t| mmc_ccdf(slots, rho, t), 0.99),
            node_slots,
        }
    }

    /// The slots every node has, when they all have the same number.
    pub fn slots_per_node(&self) -> Option<u32> {
        let first = *self.node_slots.first()?;
        self.node_slots.iter().all(|&c| c == first).then_some(first)
    }

    /// The label of the random row: "random M/M/c" with each node's c, or "M/M/c_i" when the
    /// nodes differ.
    pub fn random_label(&self) -> String {
        match self.slots_per_node() {
            Some(c) => format!("random M/M/{c}"),
            None => "random M/M/c_i".into(),
        }
    }

    /// The label of the floor row.
    pub fn pooled_label(&self) -> String {
        format!("M/M/{} floor", self.slots)
    }

    /// The rows to print, in order: random, two choices (single-slot nodes only), the floor.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        if let (Some(mean), Some(p99)) = (self.random_mean, self.random_p99) {
            rows.push(Row {
                label: self.random_label(),
                mean,
                p99,
                limit: false,
            });
        }
        if let (Some(mean), Some(p99)) = (self.two_choices_mean, self.two_choices_p99) {
            rows.push(Row {
                label: "2 choices n=inf".into(),
                mean,
                p99,
                limit: true,
            });
        }
        rows.push(Row {
            label: self.pooled_label(),
            mean: self.pooled_mean,
            p99: self.pooled_p99,
            limit: false,
        });
        rows
    }

    /// What the rows are and what they are not, for under the table: a heading and one line
    /// per row, each starting "- ".
    pub fn note(&self) -> String {
        let per_node = match self.slots_per_node() {
            Some(c) => format!("M/M/{c}"),
            None => "M/M/c_i (c_i its slots)".into(),
        };
        let random = match self.random_mean {
            Some(_) => format!(
                "- random: each of the {} nodes is an {per_node} queue at 1/{} of the arrivals \
                 (exact for any n)",
                self.nodes, self.nodes
            ),
            None => "- random: no row; an even share of the arrivals overloads the nodes with the \
                     fewest slots"
                .into(),
        };
        let two = if self.two_choices_mean.is_some() {
            "- 2 choices: the n -> infinity limit of the supermarket model (Mitzenmacher; \
             Vvedenskaya, Dobrushin and Karpelevich), not its value at this n"
        } else {
            "- 2 choices: no row; the supermarket-model result is for single-slot nodes"
        };
        format!(
            "theory at rho {:.2} (Poisson arrivals, exponential service), in mean service times:\n\
             {random}\n{two}\n\
             - M/M/{} floor: one FIFO queue in front of all {} slots, the lowest expected mean of \
             any placement that does not know the jobs' lengths; its p99 is that queue's own, not \
             a bound, and one finite run can land below it by chance",
            self.rho, self.slots, self.slots
        )
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

    /// The textbook values (M/M/1 1/(1-ρ), the supermarket model Σ ρ^((d^i-d)/(d-1)), Erlang C
    /// for M/M/8) at ρ 0.5, 0.8, 0.9 and 0.95, to the digits the design's reference table gives.
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
        let r = Reference::at(0.9, &[1; 8]);
        let (two_mean, two_p99) = (r.two_choices_mean.unwrap(), r.two_choices_p99.unwrap());
        // The floor is below two choices, which is below random, for both statistics.
        assert!(r.pooled_mean < two_mean && two_mean < r.random_mean.unwrap());
        assert!(r.pooled_p99 < two_p99 && two_p99 < r.random_p99.unwrap());
        close(mmc_ccdf(8, 0.9, r.pooled_p99), 0.01, 9);
        close(random_ccdf(0.9, &[1; 8], r.random_p99.unwrap()), 0.01, 9);
    }

    /// Erlang C straight from its textbook form, `(a^c/c!) (c/(c-a)) / (sum_{k<c} a^k/k! +
    /// (a^c/c!) (c/(c-a)))`, for small c where the powers and factorials fit.
    fn erlang_c_direct(c: u32, rho: f64) -> f64 {
        let a = f64::from(c) * rho;
        let mut term = 1.0; // a^k / k!
        let mut sum = 0.0;
        for k in 0..c {
            sum += term;
            term *= a / f64::from(k + 1);
        }
        let top = term * f64::from(c) / (f64::from(c) - a);
        top / (sum + top)
    }

    #[test]
    fn erlang_c_recursion_matches_the_direct_formula() {
        for c in 1..=20 {
            for rho in [0.1, 0.5, 0.8, 0.9, 0.95, 0.99] {
                let (recursive, direct) = (erlang_c(c, rho), erlang_c_direct(c, rho));
                assert!((recursive - direct).abs() < 1e-12, "c {c} rho {rho}");
            }
        }
    }

    #[test]
    fn mm1_is_the_one_slot_case_of_mmc() {
        for rho in RHOS {
            close(mmc_mean(1, rho), mm1_mean(rho), 9);
            for i in 0..100 {
                let t = f64::from(i) * 0.3;
                close(mmc_ccdf(1, rho, t), mm1_ccdf(rho, t), 9);
            }
            close(random_mean(rho, &[1; 5]).unwrap(), mm1_mean(rho), 9);
        }
    }

    #[test]
    fn mm2_mean_sojourn_is_one_over_one_minus_rho_squared() {
        // M/M/2: Lq = 2 rho^3 / (1 - rho^2), so W = 1/mu + Lq/lambda = 1 / (mu (1 - rho^2)).
        for rho in RHOS {
            close(mmc_mean(2, rho), 1.0 / (1.0 - rho * rho), 9);
        }
        close(mmc_mean(2, 0.9), 5.263_157_894_7, 9);
    }

    #[test]
    fn pooling_more_slots_at_the_same_load_lowers_the_mean() {
        for rho in RHOS {
            let mut last = mmc_mean(1, rho);
            for c in (2..=64).chain([100, 500, 1000, 2000, 5000]) {
                let mean = mmc_mean(c, rho);
                // Strictly lower until the wait is too small for an f64 beside 1 to hold.
                assert!(
                    mean < last || (mean == last && last - 1.0 < 1e-15),
                    "rho {rho}: M/M/{c} mean {mean} >= {last}"
                );
                assert!(
                    mean >= 1.0,
                    "rho {rho}: M/M/{c} mean {mean} below one service"
                );
                last = mean;
            }
        }
        // Thousands of slots stay finite, and at rho 0.9 almost nobody waits.
        for c in [1000, 4096, 10_000] {
            for rho in [0.5, 0.9, 0.99, 0.999] {
                let p = erlang_c(c, rho);
                assert!(
                    p.is_finite() && (0.0..1.0).contains(&p),
                    "c {c} rho {rho}: {p}"
                );
                let tail = mmc_ccdf(c, rho, 3.0);
                assert!(tail.is_finite() && (0.0..=1.0).contains(&tail));
            }
        }
        assert!(mmc_mean(4096, 0.9) < 1.0 + 1e-6);
    }

    #[test]
    fn the_floor_is_below_random_for_every_shape() {
        for rho in [0.3, 0.5, 0.8, 0.9, 0.95] {
            for n in [1, 2, 3, 8, 16, 100] {
                for c in [1, 2, 4, 8] {
                    let r = Reference::at(rho, &vec![c; n]);
                    let random = r.random_mean.unwrap();
                    // Random over n nodes of c slots is n M/M/c queues at 1/n of the load each.
                    close(random, mmc_mean(c, rho), 9);
                    close(r.pooled_mean, mmc_mean(n as u32 * c, rho), 9);
                    if n == 1 {
                        close(r.pooled_mean, random, 9);
                    } else {
                        assert!(r.pooled_mean < random, "rho {rho} n {n} c {c}");
                        assert!(
                            r.pooled_p99 < r.random_p99.unwrap(),
                            "rho {rho} n {n} c {c}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rows_name_each_node_and_the_pool() {
        // The case of the issue: 2 workers x 2 slots at rho 0.9 is two M/M/2 and an M/M/4
        // floor, with no two-choices row (that result is for single-slot nodes).
        let r = Reference::at(0.9, &[2, 2]);
        let rows = r.rows();
        let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["random M/M/2", "M/M/4 floor"]);
        close(rows[0].mean, 1.0 / (1.0 - 0.81), 9);
        close(rows[1].mean, 2.969, 3);
        assert!(rows.iter().all(|r| !r.limit));
        assert!(r.note().contains("single-slot"), "{}", r.note());

        let r = Reference::at(0.9, &[1; 8]);
        let rows = r.rows();
        let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["random M/M/1", "2 choices n=inf", "M/M/8 floor"]);
        assert_eq!(
            rows.iter().map(|r| r.limit).collect::<Vec<_>>(),
            [false, true, false]
        );
        assert!(r.note().contains("n -> infinity limit"), "{}", r.note());
        assert_eq!(r.slots_per_node(), Some(1));
    }

    #[test]
    fn random_over_unequal_nodes_averages_their_queues() {
        // 2 + 4 slots at rho 0.5: 3 jobs per service time in all, 1.5 to each node, so the
        // nodes run at 0.75 and 0.375 per slot.
        let node_slots = [2, 4];
        let expected = 0.5 * (mmc_mean(2, 0.75) + mmc_mean(4, 0.375));
        close(random_mean(0.5, &node_slots).unwrap(), expected, 9);
        let r = Reference::at(0.5, &node_slots);
        assert_eq!(r.random_label(), "random M/M/c_i");
        assert_eq!(r.slots_per_node(), None);
        assert!(r.pooled_mean < expected);
        let step = 0.005;
        let integral: f64 = (0..20_000)
            .map(|i| random_ccdf(0.5, &node_slots, (f64::from(i) + 0.5) * step) * step)
            .sum();
        assert!((integral - expected).abs() < 1e-3 * expected, "{integral}");
        // 1 + 3 slots at rho 0.9: the one-slot node gets 1.8 per service time and cannot keep
        // up, so there is no random row.
        let r = Reference::at(0.9, &[1, 3]);
        assert_eq!(r.random_mean, None);
        assert_eq!(r.rows().len(), 1);
        assert!(r.note().contains("overloads"));
    }
}
