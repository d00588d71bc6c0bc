//! What `hearsay` prints for people (with `--json` it prints the worker's JSON instead): a job's
//! outcome, the members as a table, a page of jobs as a table, and incarnations as times.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hearsay_shared::JobOutcome;
use serde_json::Value;

use crate::watch::NodeRow;

/// An outcome for people: the status line, where it ran, and its output or error.
pub fn outcome_text(outcome: &JobOutcome) -> String {
    let mut text = format!(
        "{} {} {}",
        outcome.id,
        outcome.kind,
        outcome.status.as_str()
    );
    if let Some(node) = &outcome.executing_node {
        text.push_str(&format!(" on {node}"));
    }
    if outcome.path.len() > 1 {
        let path: Vec<&str> = outcome.path.iter().map(|n| n.as_str()).collect();
        text.push_str(&format!(" (via {})", path.join(" > ")));
    }
    if let Some(ms) = outcome.total_ms {
        text.push_str(&format!(", {ms} ms"));
    }
    text.push('\n');
    if let Some(output) = &outcome.output {
        match output {
            Value::String(s) => text.push_str(&format!("output: {s}\n")),
            other => text.push_str(&format!("output: {other}\n")),
        }
    }
    if let Some(error) = &outcome.error {
        text.push_str(&format!("error: {error}\n"));
    }
    text
}

/// `members` as a table: one row per node, sorted by id as the worker sends them.
pub fn members_table(view: &Value) -> Result<String> {
    let nodes: Vec<Value> = view["nodes"]
        .as_array()
        .context("the answer is not a Hearsay worker's /v1/cluster view")?
        .clone();
    let me = view["node"].as_str().unwrap_or("");
    let mut rows = vec![[
        "ID",
        "API",
        "GOSSIP",
        "STATE",
        "QUEUED/SLOTS",
        "RUNNING",
        "CPU",
        "AGE",
        "STARTED (INCARNATION)",
    ]
    .map(str::to_owned)];
    for node in &nodes {
        let row: NodeRow = serde_json::from_value(node.clone())
            .with_context(|| format!("a node of the view is not what a worker sends: {node}"))?;
        let mark = if row.id == me { " *" } else { "" };
        rows.push([
            format!("{}{mark}", row.id),
            node["api"].as_str().unwrap_or("-").to_owned(),
            node["gossip"].as_str().unwrap_or("-").to_owned(),
            row.shown_state().to_owned(),
            format!("{}/{}", row.load.queued, row.load.slots),
            row.load.running.to_string(),
            format!("{:.1}%", row.load.cpu_permille as f64 / 10.0),
            format!("{} ms", row.age_ms),
            incarnation_time(row.incarnation),
        ]);
    }
    let mut text = aligned(&rows);
    text.push_str(&format!("({} nodes, seen from {me} *)\n", nodes.len()));
    Ok(text)
}

/// A page of `GET /v1/jobs` as a table: one row per job, by id as the worker sends them, and
/// the `--after` of the next page when there is one.
pub fn jobs_table(page: &Value) -> Result<String> {
    let jobs = page["jobs"]
        .as_array()
        .context("the answer is not a Hearsay worker's list of jobs")?;
    let mut rows = vec![[
        "ID",
        "KIND",
        "STATUS",
        "ENTRY",
        "EXECUTING",
        "HOPS",
        "TOTAL",
    ]
    .map(str::to_owned)];
    for job in jobs {
        let text = |key: &str| job[key].as_str().unwrap_or("-").to_owned();
        rows.push([
            text("id"),
            text("kind"),
            text("status"),
            text("entry_node"),
            text("executing_node"),
            job["hops"].as_u64().map_or("-".into(), |h| h.to_string()),
            job["total_ms"]
                .as_u64()
                .map_or("-".into(), |ms| format!("{ms} ms")),
        ]);
    }
    let mut text = aligned(&rows);
    let count = jobs.len();
    let noun = if count == 1 { "job" } else { "jobs" };
    match page["next"].as_str() {
        Some(next) => text.push_str(&format!("({count} {noun}; more with --after {next})\n")),
        None => text.push_str(&format!("({count} {noun})\n")),
    }
    Ok(text)
}

/// An incarnation (a node's start, in milliseconds since the UNIX epoch) as a UTC time, with the
/// number beside it: `2026-12-03T18:12:33Z (1796314353000)`.
pub fn incarnation_time(incarnation: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(incarnation);
    // An incarnation far from any clock (a node that took max(stored + 1)) is shown as it is.
    if incarnation == 0 || at > SystemTime::now() + Duration::from_secs(365 * 24 * 3600) {
        return incarnation.to_string();
    }
    format!("{} ({incarnation})", humantime::format_rfc3339_seconds(at))
}

/// `rows` (a header first) as text, each column as wide as its widest cell, two spaces apart.
fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn members_are_a_table_with_times_for_incarnations() {
        let view = json!({"node": "a", "nodes": [
            {"id": "a", "api": "127.0.0.1:8081", "gossip": "127.0.0.1:7947", "state": "alive",
             "incarnation": 1_796_314_353_000u64, "age_ms": 0,
             "load": {"cpu_permille": 113, "queued": 2, "running": 1, "slots": 1, "state": "alive"}},
            {"id": "b", "api": "127.0.0.1:8082", "gossip": "127.0.0.1:7948", "state": "alive",
             "incarnation": 5, "age_ms": 143,
             "load": {"cpu_permille": 0, "queued": 0, "running": 0, "slots": 4, "state": "leaving"}}
        ]});
        let text = members_table(&view).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("ID"), "{text}");
        assert!(lines[1].contains("a *") && lines[1].contains("2/1") && lines[1].contains("11.3%"));
        assert!(lines[1].contains("2026-12-03T"), "{text}");
        assert!(
            lines[2].contains("leaving") && lines[2].contains("143 ms"),
            "{text}"
        );
        assert!(members_table(&json!({"nodes": 3})).is_err());
    }

    #[test]
    fn jobs_are_a_table_with_the_next_page_named() {
        let page = json!({"jobs": [
            {"id": "00000000000000a1", "kind": "echo", "status": "succeeded", "entry_node": "a",
             "executing_node": "b", "hops": 1, "total_ms": 7},
            {"id": "00000000000000a2", "kind": "sleep", "status": "queued", "entry_node": "a",
             "executing_node": null, "hops": 0, "total_ms": null},
        ], "next": "00000000000000a2"});
        let text = jobs_table(&page).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("ID") && lines[0].contains("STATUS"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("00000000000000a1") && lines[1].contains("7 ms"),
            "{text}"
        );
        assert!(
            lines[2].contains("queued") && lines[2].contains(" - "),
            "{text}"
        );
        assert_eq!(lines[3], "(2 jobs; more with --after 00000000000000a2)");
        let last = jobs_table(&json!({"jobs": [], "next": null})).unwrap();
        assert!(last.ends_with("(0 jobs)\n"), "{last}");
        assert!(jobs_table(&json!({"nodes": []})).is_err());
    }
}
