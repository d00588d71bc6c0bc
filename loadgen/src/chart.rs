//! The chart: the sojourn-time distribution of every run as a tail plot, `P(sojourn > t)` on a
//! logarithmic axis against t in units of the mean service time, with the theory's tails drawn
//! dashed beside them. On such axes an exponential tail (M/M/1) is a straight line whose slope
//! is `-(1 - rho)`, and a better placement is a curve that falls faster.
//!
//! Written as plain SVG text: a few polylines and labels do not need a plotting library.

use std::fmt::Write as _;

use crate::theory::{self, Reference};

/// A distribution's tail, `t -> P(T > t)`.
type Tail<'a> = Box<dyn Fn(f64) -> f64 + 'a>;

/// One measured distribution.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Legend text.
    pub label: &'a str,
    /// Sojourns in units of the mean service time, ascending.
    pub sorted: &'a [f64],
}

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 600.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// Distinct colours for the runs (Tableau 10).
const COLOURS: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];
/// The theory lines' colour.
const THEORY_COLOUR: &str = "#222";
/// Most points drawn per measured series; a longer sample is thinned evenly (the tail, where
/// the points are sparse, is always kept whole).
const MAX_POINTS: usize = 1500;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG document.
pub fn render(title: &str, series: &[Series<'_>], theory: Option<&Reference>) -> String {
    let largest_n = series.iter().map(|s| s.sorted.len()).max().unwrap_or(0);
    // The lowest probability shown: one job in the largest sample, rounded down to a decade.
    let y_min_exp = -((largest_n.max(10) as f64).log10().ceil()).min(6.0);
    let y_min = 10f64.powf(y_min_exp);
    // The x range: the largest sojourn measured, and far enough for the theory lines to reach
    // the bottom of the plot for the worst of them (random dispatch).
    let measured_max = series
        .iter()
        .filter_map(|s| s.sorted.last().copied())
        .fold(0.0, f64::max);
    let theory_max = theory.map_or(0.0, |t| {
        let rho = t.rho;
        match t.random_mean {
            Some(_) => {
                theory::quantile(|v| theory::random_ccdf(rho, &t.node_slots, v), 1.0 - y_min)
            }
            None => theory::quantile(|v| theory::mmc_ccdf(t.slots, rho, v), 1.0 - y_min),
        }
    });
    let x_max = nice_ceiling(
        measured_max
            .max(theory_max.min(measured_max * 1.5))
            .max(1.0),
    );

    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |t: f64| LEFT + (t / x_max).clamp(0.0, 1.0) * plot_w;
    let y = |p: f64| {
        let p = p.max(y_min).min(1.0);
        TOP + (p.log10() / y_min_exp).clamp(0.0, 1.0) * plot_h
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(title)
    );
    // Grid and axes.
    let mut decade = 0;
    while f64::from(decade) >= y_min_exp {
        let p = 10f64.powi(decade);
        let yy = y(p);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 8.0,
            yy + 4.0,
            if decade == 0 {
                "1".to_owned()
            } else {
                format!("1e{decade}")
            }
        );
        decade -= 1;
    }
    let step = tick_step(x_max);
    let mut t = 0.0;
    while t <= x_max + 1e-9 {
        let xx = x(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            trim_number(t)
        );
        t += step;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">sojourn time, in units of the mean service time</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">P(sojourn &gt; t), log scale</text>"#,
        TOP + plot_h / 2.0
    );

    // Label, colour, and the dash pattern of a theory line.
    let mut legend: Vec<(String, String, Option<&str>)> = Vec::new();
    // Measured tails: at the i-th smallest of n values the tail is (n - i) / n, drawn as
    // steps.
    for (i, s) in series.iter().enumerate() {
        if s.sorted.is_empty() {
            continue;
        }
        let colour = COLOURS[i % COLOURS.len()];
        let n = s.sorted.len();
        let keep_every = n.div_ceil(MAX_POINTS).max(1);
        let mut points = String::new();
        let mut last_p = 1.0;
        let _ = write!(points, "{:.1},{:.1} ", x(0.0), y(1.0));
        for (k, &v) in s.sorted.iter().enumerate() {
            let in_tail = n - k <= MAX_POINTS / 3;
            if k % keep_every != 0 && !in_tail && k + 1 != n {
                continue;
            }
            let p_after = (n - k - 1) as f64 / n as f64;
            let _ = write!(points, "{:.1},{:.1} ", x(v), y(last_p));
            if p_after < y_min {
                break;
            }
            let _ = write!(points, "{:.1},{:.1} ", x(v), y(p_after));
            last_p = p_after;
        }
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.trim_end()
        );
        legend.push((format!("{} (n={n})", s.label), colour.to_owned(), None));
    }
    if let Some(t) = theory {
        // The theory is drawn in black, told apart by its dashes, so that no theory line can
        // be taken for a measured run's colour.
        // The same rows as the table: random and the floor always (random unless a node is
        // overloaded), two choices only for single-slot nodes.
        let (rho, slots) = (t.rho, t.slots);
        let mut lines: Vec<(String, &str, Tail<'_>)> = Vec::new();
        if t.random_mean.is_some() {
            lines.push((
                format!("theory: {}", t.random_label()),
                "8 5",
                Box::new(move |v| theory::random_ccdf(rho, &t.node_slots, v)),
            ));
        }
        if t.two_choices_mean.is_some() {
            lines.push((
                "theory: 2 choices, n=inf".into(),
                "2 3",
                Box::new(move |v| theory::supermarket_ccdf(rho, 2, v)),
            ));
        }
        lines.push((
            format!("theory: {}", t.pooled_label()),
            "12 3 2 3",
            Box::new(move |v| theory::mmc_ccdf(slots, rho, v)),
        ));
        for (label, dashes, ccdf) in lines {
            let mut points = String::new();
            for k in 0..=400 {
                let v = x_max * f64::from(k) / 400.0;
                let p = ccdf(v);
                let _ = write!(points, "{:.1},{:.1} ", x(v), y(p));
                if p < y_min {
                    break;
                }
            }
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{THEORY_COLOUR}" stroke-width="1.5" stroke-dasharray="{dashes}" points="{}"/>"#,
                points.trim_end()
            );
            legend.push((label, THEORY_COLOUR.to_owned(), Some(dashes)));
        }
    }
    for (i, (label, colour, dashes)) in legend.iter().enumerate() {
        let ly = TOP + 10.0 + 22.0 * i as f64;
        let lx = LEFT + plot_w + 15.0;
        let dash = dashes.map_or(String::new(), |d| format!(r#" stroke-dasharray="{d}""#));
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 28.0,
            lx + 34.0,
            ly + 4.0,
            escape(label)
        );
    }
    if let Some(t) = theory {
        let ly = TOP + 10.0 + 22.0 * legend.len() as f64 + 10.0;
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{ly:.1}" fill="#555">theory at rho {:.2}, exp. service</text>"##,
            LEFT + plot_w + 15.0,
            t.rho
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 x 10^k) at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    for m in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if m * decade >= v - 1e-9 {
            return m * decade;
        }
    }
    10.0 * decade
}

/// A tick spacing giving 5 to 10 ticks.
fn tick_step(x_max: f64) -> f64 {
    let rough = x_max / 8.0;
    let decade = 10f64.powf(rough.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * decade >= rough {
            return m * decade;
        }
    }
    10.0 * decade
}

fn trim_number(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_and_the_theory() {
        let a: Vec<f64> = (1..=500).map(|i| f64::from(i) / 50.0).collect();
        let b: Vec<f64> = (1..=500).map(|i| f64::from(i) / 100.0).collect();
        let svg = render(
            "p2c & friends",
            &[
                Series {
                    label: "random",
                    sorted: &a,
                },
                Series {
                    label: "p2c <cluster>",
                    sorted: &b,
                },
            ],
            Some(&Reference::at(0.9, &[1; 8])),
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 5, "two runs, three lines");
        assert!(svg.contains("p2c &lt;cluster&gt; (n=500)"));
        assert!(svg.contains("p2c &amp; friends"));
        assert!(svg.contains("M/M/8 floor"));
        assert!(svg.contains("random M/M/1"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn draws_the_rows_that_apply_to_several_slots() {
        let a: Vec<f64> = (1..=500).map(|i| f64::from(i) / 50.0).collect();
        let svg = render(
            "two slots",
            &[Series {
                label: "jsq",
                sorted: &a,
            }],
            Some(&Reference::at(0.9, &[2; 4])),
        );
        assert_eq!(svg.matches("<polyline").count(), 3, "one run, two lines");
        assert!(svg.contains("random M/M/2") && svg.contains("M/M/8 floor"));
        assert!(!svg.contains("2 choices") && !svg.contains("NaN"));
    }

    #[test]
    fn empty_series_still_give_a_valid_chart() {
        let svg = render(
            "nothing",
            &[Series {
                label: "x",
                sorted: &[],
            }],
            None,
        );
        assert!(svg.contains("</svg>") && !svg.contains("NaN"));
        assert_eq!(svg.matches("<polyline").count(), 0);
    }

    #[test]
    fn axes_are_rounded_nicely() {
        assert_eq!(nice_ceiling(7.3), 8.0);
        assert_eq!(nice_ceiling(9.1), 10.0);
        assert_eq!(nice_ceiling(23.0), 25.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(tick_step(50.0), 10.0);
        assert_eq!(trim_number(2.50), "2.5");
    }
}
