//! What became of a job: its status, its outcome, and the limits an outcome is kept within.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::JobId;
use crate::NodeId;

/// Where a job is in its life. The last five are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a slot.
    Queued,
    /// In a slot.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Ran past its timeout and was stopped.
    TimedOut,
    /// Its end will not be known: the node holding it stopped answering, restarted or left
    /// before it was known to finish. It may have run, in part or in full; never twice.
    Lost,
    /// Cancelled by a client (`DELETE /v1/jobs/{id}`): taken out of the queue before it ran,
    /// or, forced, stopped while it ran.
    Cancelled,
}

impl JobStatus {
    /// Every status, in the order of a job's life.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::TimedOut,
        JobStatus::Lost,
        JobStatus::Cancelled,
    ];

    /// Its name, as in the API's JSON and the metrics' labels (`timed_out`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::TimedOut => "timed_out",
            JobStatus::Lost => "lost",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

/// What became of a job (or where it is, while it is not finished).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// The job.
    pub id: JobId,
    /// Its kind's name.
    pub kind: String,
    /// Where it stands.
    pub status: JobStatus,
    /// The node it was submitted to.
    pub entry_node: NodeId,
    /// The node that runs or ran it, once known.
    pub executing_node: Option<NodeId>,
    /// How many times it moved between nodes: forwarded by its entry node, taken by an idle
    /// node, handed on by a leaving one (at most 2 in all).
    pub hops: u32,
    /// Every node it was at, as far as the answering node knows: the entry node first, the
    /// executing node last (empty until it is placed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<NodeId>,
    /// Time spent waiting for a slot.
    pub queued_ms: Option<u64>,
    /// Time spent running.
    pub run_ms: Option<u64>,
    /// From submission to the end.
    pub total_ms: Option<u64>,
    /// The job's result, when it succeeded; for an `exec` job, its exit and output whatever
    /// its end (`{"exit_code", "signal", "stdout", "stderr", "stdout_truncated",
    /// "stderr_truncated"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// What went wrong, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether `output` was cut before it was kept (see [`JobOutcome::limit`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_truncated: bool,
    /// When it was cut: the bytes of text (of its strings) the output had before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_original_bytes: Option<u64>,
}

/// The most JSON values an outcome's output keeps (an `exec` job's output has 7, an `echo`
/// job's 1); an output with more, which only a peer could send, is dropped whole and flagged.
pub const MAX_OUTPUT_VALUES: usize = 256;

/// The longest error text an outcome keeps, in bytes (the errors a node writes are one line;
/// a peer's could be anything); a longer one is cut and ends with `…`.
pub const MAX_ERROR_BYTES: usize = 4096;

impl JobOutcome {
    /// The record of job `id` of `kind`, entered at `entry`, that says no more than `status`.
    pub fn new(id: JobId, kind: &str, status: JobStatus, entry: NodeId) -> JobOutcome {
        JobOutcome {
            id,
            kind: kind.to_owned(),
            status,
            entry_node: entry,
            executing_node: None,
            hops: 0,
            path: Vec::new(),
            queued_ms: None,
            run_ms: None,
            total_ms: None,
            output: None,
            error: None,
            output_truncated: false,
            output_original_bytes: None,
        }
    }

    /// Bounds what the outcome holds: the text of its output (the bytes of its strings — an
    /// `echo` job's data, an `exec` job's `stdout` and `stderr`) to `max_output_bytes` in all,
    /// and its error to [`MAX_ERROR_BYTES`]. Returns whether anything was cut.
    ///
    /// Strings are cut from the longest down, to one common length (so a short `stderr` is
    /// kept whole beside a long `stdout`), at a character boundary. A string cut under a key
    /// `K` sets a sibling `K_truncated` flag if the object has one (an `exec` job's stream
    /// flags). A cut output sets [`JobOutcome::output_truncated`] and, unless a node before
    /// this one cut it first, [`JobOutcome::output_original_bytes`].
    pub fn limit(&mut self, max_output_bytes: usize) -> bool {
        let mut cut = false;
        if let Some(error) = &mut self.error {
            if error.len() > MAX_ERROR_BYTES {
                let keep = floor_char_boundary(error, MAX_ERROR_BYTES - '…'.len_utf8());
                *error = format!("{}…", &error[..keep]);
                cut = true;
            }
        }
        let Some(output) = &mut self.output else {
            return cut;
        };
        let mut lengths = Vec::new();
        let values = string_lengths(output, &mut lengths);
        let text: usize = lengths.iter().sum();
        let original = u64::try_from(text).unwrap_or(u64::MAX);
        if values > MAX_OUTPUT_VALUES {
            self.output = None;
        } else if let Some(level) = water_level(&mut lengths, max_output_bytes) {
            cut_strings(output, level);
        } else {
            return cut;
        }
        self.output_truncated = true;
        self.output_original_bytes.get_or_insert(original);
        true
    }
}

/// Pushes the byte length of every string in `value` (keys not counted) onto `lengths`;
/// returns how many values it holds, itself included.
fn string_lengths(value: &Value, lengths: &mut Vec<usize>) -> usize {
    match value {
        Value::String(s) => {
            lengths.push(s.len());
            1
        }
        Value::Array(items) => {
            1 + items
                .iter()
                .map(|v| string_lengths(v, lengths))
                .sum::<usize>()
        }
        Value::Object(map) => {
            1 + map
                .values()
                .map(|v| string_lengths(v, lengths))
                .sum::<usize>()
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => 1,
    }
}

/// The length every string is cut to so that their lengths sum to at most `budget`, the
/// shorter ones kept whole; `None` if they fit already. Sorts `lengths`.
fn water_level(lengths: &mut [usize], budget: usize) -> Option<usize> {
    if lengths.iter().sum::<usize>() <= budget {
        return None;
    }
    lengths.sort_unstable();
    let mut left = budget;
    for (i, &len) in lengths.iter().enumerate() {
        let share = left / (lengths.len() - i);
        if len > share {
            // This one and every longer one get the share.
            return Some(share);
        }
        left -= len;
    }
    None
}

/// Cuts every string in `value` to at most `level` bytes, setting `K_truncated` flags.
fn cut_strings(value: &mut Value, level: usize) -> bool {
    match value {
        Value::String(s) if s.len() > level => {
            // A copy, not a shrink in place: shrinking a large buffer leaves its tail free
            // between kept ones, which the allocator can hardly reuse (measured: 10,000 echo
            // jobs of 64 KiB cut to 1 KiB grew a node by 47 MB shrunk in place, by 18 MB copied).
            *s = s[..floor_char_boundary(s, level)].to_owned();
            true
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |cut, v| cut_strings(v, level) | cut),
        Value::Object(map) => {
            let mut cut_keys = Vec::new();
            for (key, v) in map.iter_mut() {
                if cut_strings(v, level) {
                    cut_keys.push(format!("{key}_truncated"));
                }
            }
            for flag in &cut_keys {
                if let Some(Value::Bool(truncated)) = map.get_mut(flag) {
                    *truncated = true;
                }
            }
            !cut_keys.is_empty()
        }
        _ => false,
    }
}

/// The largest index at most `at` that is a character boundary of `s`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_named_alike_in_json_and_as_str() {
        for status in JobStatus::ALL {
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, status.as_str());
            let back: JobStatus = serde_json::from_value(json).unwrap();
            assert_eq!(back, status);
        }
    }

    fn finished(output: Value) -> JobOutcome {
        let entry = NodeId::new("n1").unwrap();
        let mut outcome = JobOutcome::new(JobId(1), "exec", JobStatus::Succeeded, entry);
        outcome.output = Some(output);
        outcome
    }

    #[test]
    fn an_output_within_the_limit_is_kept_as_it_is() {
        let mut outcome = finished(Value::String("x".repeat(100)));
        let before = outcome.clone();
        assert!(!outcome.limit(100));
        assert_eq!(outcome, before);
        let text = serde_json::to_value(&outcome).unwrap();
        assert!(text.get("output_truncated").is_none(), "{text}");
        assert!(text.get("output_original_bytes").is_none(), "{text}");
    }

    #[test]
    fn a_long_output_is_cut_and_flagged_with_its_length() {
        let mut outcome = finished(Value::String("x".repeat(100)));
        assert!(outcome.limit(40));
        assert_eq!(outcome.output, Some(Value::String("x".repeat(40))));
        let text = serde_json::to_value(&outcome).unwrap();
        assert_eq!(text["output_truncated"], true);
        assert_eq!(text["output_original_bytes"], 100);
        // Cut again further on (the entry node of a forwarded job): the first length stays.
        assert!(outcome.limit(10));
        assert_eq!(outcome.output_original_bytes, Some(100));
        // A character is never split.
        let mut outcome = finished(Value::String("é".repeat(10)));
        assert!(outcome.limit(5));
        assert_eq!(outcome.output, Some(Value::String("éé".into())));
    }

    #[test]
    fn streams_are_cut_longest_first_and_their_flags_set() {
        let mut outcome = finished(serde_json::json!({
            "exit_code": 0, "signal": null,
            "stdout": "o".repeat(100), "stderr": "e".repeat(10),
            "stdout_truncated": false, "stderr_truncated": false,
        }));
        assert!(outcome.limit(50));
        let output = outcome.output.as_ref().unwrap();
        assert_eq!(output["stderr"], "e".repeat(10), "the short one is whole");
        assert_eq!(output["stdout"], "o".repeat(40));
        assert_eq!(output["stdout_truncated"], true);
        assert_eq!(output["stderr_truncated"], false);
        assert_eq!(outcome.output_original_bytes, Some(110));
    }

    #[test]
    fn an_output_of_too_many_values_is_dropped_and_a_long_error_cut() {
        let mut outcome = finished(Value::Array(vec![Value::Null; MAX_OUTPUT_VALUES]));
        outcome.error = Some("e".repeat(MAX_ERROR_BYTES + 1));
        assert!(outcome.limit(1 << 20));
        assert_eq!(outcome.output, None);
        assert!(outcome.output_truncated);
        assert_eq!(outcome.output_original_bytes, Some(0));
        let error = outcome.error.unwrap();
        assert_eq!(error.len(), MAX_ERROR_BYTES);
        assert!(error.ends_with('…'));
    }
}
