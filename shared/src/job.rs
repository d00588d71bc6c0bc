//! The job vocabulary of the HTTP API: what to run ([`JobSpec`]), its name ([`JobId`]), and what
//! became of it ([`JobStatus`], [`JobOutcome`]).
//!
//! A job arrives as JSON and is checked field by field, so that a bad one is refused with an
//! error that names the field and the reason ([`JobError`]) rather than a parser's message.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::json::{self, JsonRefusal};
use crate::NodeId;

/// The longest a `sleep` or `spin` job may last, and the largest timeout: one hour.
pub const MAX_JOB_MS: u64 = 3_600_000;
/// The largest `echo` payload, in bytes.
pub const MAX_ECHO_BYTES: usize = 64 * 1024;
/// The most arguments an `exec` job may give.
pub const MAX_EXEC_ARGS: usize = 32;
/// The longest argument of an `exec` job, in bytes.
pub const MAX_EXEC_ARG_BYTES: usize = 4096;
/// The largest `stdin` of an `exec` job, in bytes.
pub const MAX_EXEC_STDIN_BYTES: usize = 64 * 1024;
/// The longest command name, in bytes.
pub const MAX_COMMAND_NAME_BYTES: usize = 32;

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    /// Waits `ms` milliseconds without using a CPU.
    Sleep {
        /// How long.
        ms: u64,
    },
    /// Keeps one CPU busy for `ms` milliseconds.
    Spin {
        /// How long.
        ms: u64,
    },
    /// Returns `data`.
    Echo {
        /// What to return.
        data: String,
    },
    /// Runs a command that the executing node declares in its configuration, by name, with
    /// `args` filling its argument template and `stdin` as its standard input.
    Exec {
        /// The declared command's name.
        command: String,
        /// The values of the template's placeholders `{0}`, `{1}`, ...
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        /// What the program reads on its standard input (none: it reads end of file at once).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stdin: Option<String>,
    },
}

impl JobKind {
    /// The kind's name: `sleep`, `spin`, `echo` or `exec`.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Sleep { .. } => "sleep",
            JobKind::Spin { .. } => "spin",
            JobKind::Echo { .. } => "echo",
            JobKind::Exec { .. } => "exec",
        }
    }

    /// The command an `exec` job names; `None` for the other kinds.
    pub fn command(&self) -> Option<&str> {
        match self {
            JobKind::Exec { command, .. } => Some(command),
            _ => None,
        }
    }
}

/// Checks a command name: 1 to [`MAX_COMMAND_NAME_BYTES`] bytes of `a-z`, `0-9`, `_` and `-`.
/// The error is the reason.
pub fn check_command_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_COMMAND_NAME_BYTES {
        return Err(format!(
            "must be 1 to {MAX_COMMAND_NAME_BYTES} bytes long, not {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
    {
        return Err(format!(
            "may hold only a-z, 0-9, _ and -, not {c:?} (in {name:?})"
        ));
    }
    Ok(())
}

/// A job as submitted: its kind and an optional timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// What to run.
    #[serde(flatten)]
    pub kind: JobKind,
    /// Give up on the job (status `timed_out`) if it has not finished this many milliseconds
    /// after it started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Why a submitted job was refused: the field and the reason. Nothing was accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{field}: {reason}")]
pub struct JobError {
    /// The offending field (`body` for the document as a whole).
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

impl From<JsonRefusal> for JobError {
    /// A duplicate key names its path; anything else is the `body`'s fault.
    fn from(refusal: JsonRefusal) -> Self {
        match &refusal {
            JsonRefusal::DuplicateKey { path, key } => refuse(
                path,
                format!("the key {key:?} appears twice in one object; a key may appear only once"),
            ),
            JsonRefusal::Syntax(_) | JsonRefusal::TooDeep { .. } => {
                refuse("body", refusal.to_string())
            }
        }
    }
}

fn refuse(field: &str, reason: impl Into<String>) -> JobError {
    JobError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn millis(object: &Map<String, Value>, field: &str, min: u64) -> Result<Option<u64>, JobError> {
    let Some(value) = object.get(field) else {
        return Ok(None);
    };
    let expected = format!("must be a whole number of milliseconds from {min} to {MAX_JOB_MS}");
    match value.as_u64() {
        Some(ms) if (min..=MAX_JOB_MS).contains(&ms) => Ok(Some(ms)),
        Some(ms) => Err(refuse(field, format!("{expected}, not {ms}"))),
        None => Err(refuse(field, format!("{expected}, not {value}"))),
    }
}

impl JobSpec {
    /// Parses and checks a job from its JSON text.
    pub fn from_json(body: &[u8]) -> Result<JobSpec, JobError> {
        let value = json::parse(body, MAX_JSON_DEPTH).map_err(JobError::from)?;
        JobSpec::from_value(&value)
    }

    /// Checks a job given as a JSON value.
    pub fn from_value(value: &Value) -> Result<JobSpec, JobError> {
        let Value::Object(object) = value else {
            return Err(refuse(
                "body",
                "must be a JSON object such as {\"kind\":\"sleep\",\"ms\":100}",
            ));
        };
        let kind = match object.get("kind") {
            None => {
                return Err(refuse(
                    "kind",
                    "is required: one of sleep, spin, echo, exec",
                ))
            }
            Some(Value::String(kind)) => kind.as_str(),
            Some(other) => return Err(refuse("kind", format!("must be a string, not {other}"))),
        };
        let allowed: &[&str] = match kind {
            "sleep" | "spin" => &["kind", "ms", "timeout_ms"],
            "echo" => &["kind", "data", "timeout_ms"],
            "exec" => &["kind", "command", "args", "stdin", "timeout_ms"],
            other => {
                return Err(refuse(
                    "kind",
                    format!("unknown kind {other:?}; expected one of sleep, spin, echo, exec"),
                ))
            }
        };
        if let Some(unknown) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(refuse(
                unknown,
                format!(
                    "unknown field for a {kind} job; allowed: {}",
                    allowed.join(", ")
                ),
            ));
        }
        let kind = match kind {
            "sleep" | "spin" => {
                let ms = millis(object, "ms", 0)?
                    .ok_or_else(|| refuse("ms", format!("is required for a {kind} job")))?;
                if kind == "sleep" {
                    JobKind::Sleep { ms }
                } else {
                    JobKind::Spin { ms }
                }
            }
            "exec" => exec(object)?,
            _ => match object.get("data") {
                Some(Value::String(data)) if data.len() <= MAX_ECHO_BYTES => {
                    JobKind::Echo { data: data.clone() }
                }
                Some(Value::String(data)) => {
                    return Err(refuse(
                        "data",
                        format!(
                            "is {} bytes; at most {MAX_ECHO_BYTES} are allowed",
                            data.len()
                        ),
                    ))
                }
                Some(other) => {
                    return Err(refuse("data", format!("must be a string, not {other}")))
                }
                None => return Err(refuse("data", "is required for an echo job")),
            },
        };
        let timeout_ms = millis(object, "timeout_ms", 1)?;
        Ok(JobSpec { kind, timeout_ms })
    }
}

/// The fields of an `exec` job: `command` a valid name, `args` a list of at most
/// [`MAX_EXEC_ARGS`] strings of at most [`MAX_EXEC_ARG_BYTES`] bytes with no NUL, `stdin` a
/// string of at most [`MAX_EXEC_STDIN_BYTES`] bytes. Whether the command is declared, and
/// whether the args fit its template, is for the nodes to say.
fn exec(object: &Map<String, Value>) -> Result<JobKind, JobError> {
    let command = match object.get("command") {
        Some(Value::String(command)) => command.clone(),
        Some(other) => return Err(refuse("command", format!("must be a string, not {other}"))),
        None => return Err(refuse("command", "is required for an exec job")),
    };
    check_command_name(&command).map_err(|reason| refuse("command", reason))?;
    let args = match object.get("args") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > MAX_EXEC_ARGS {
                return Err(refuse(
                    "args",
                    format!(
                        "holds {} arguments; at most {MAX_EXEC_ARGS} are allowed",
                        items.len()
                    ),
                ));
            }
            let mut args = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let field = format!("args[{i}]");
                let Value::String(arg) = item else {
                    return Err(refuse(&field, format!("must be a string, not {item}")));
                };
                if arg.len() > MAX_EXEC_ARG_BYTES {
                    return Err(refuse(
                        &field,
                        format!(
                            "is {} bytes; at most {MAX_EXEC_ARG_BYTES} are allowed",
                            arg.len()
                        ),
                    ));
                }
                if arg.contains('\0') {
                    return Err(refuse(&field, "must not contain a NUL character"));
                }
                args.push(arg.clone());
            }
            args
        }
        Some(other) => {
            return Err(refuse(
                "args",
                format!("must be a list of strings, not {other}"),
            ))
        }
    };
    let stdin = match object.get("stdin") {
        None => None,
        Some(Value::String(stdin)) if stdin.len() <= MAX_EXEC_STDIN_BYTES => Some(stdin.clone()),
        Some(Value::String(stdin)) => {
            return Err(refuse(
                "stdin",
                format!(
                    "is {} bytes; at most {MAX_EXEC_STDIN_BYTES} are allowed",
                    stdin.len()
                ),
            ))
        }
        Some(other) => return Err(refuse("stdin", format!("must be a string, not {other}"))),
    };
    Ok(JobKind::Exec {
        command,
        args,
        stdin,
    })
}

/// The deepest nesting of arrays and objects accepted in a job's JSON (a job needs 2); checked
/// as the JSON is parsed ([`json::parse`]).
pub const MAX_JSON_DEPTH: usize = 32;

/// A job's name: 64 random bits, written as 16 hex digits. Unique across the cluster in
/// practice (a collision needs billions of jobs in the retention window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A string that is not 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a job id is 16 hex digits, not {0:?}")]
pub struct BadJobId(pub String);

impl FromStr for JobId {
    type Err = BadJobId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadJobId(s.to_owned()));
        }
        u64::from_str_radix(s, 16)
            .map(JobId)
            .map_err(|_| BadJobId(s.to_owned()))
    }
}

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a job is in its life. The last four are terminal.
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
}

impl JobStatus {
    /// Every status, in the order of a job's life.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::TimedOut,
        JobStatus::Lost,
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

    fn err(body: &str) -> JobError {
        JobSpec::from_json(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn deep_nesting_and_duplicate_keys_are_refused_naming_the_field() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let deep = format!(r#"{{"kind":"echo","data":"x","extra":{}}}"#, nested(200));
        let e = err(&deep);
        assert_eq!(e.field, "body");
        assert!(e.reason.contains("deeper than 32"), "{e}");
        // Brackets inside strings, escaped quotes included, are text.
        let data = format!(r#"{{"kind":"echo","data":"\"{}"}}"#, "[".repeat(100));
        assert!(JobSpec::from_json(data.as_bytes()).is_ok());
        // serde_json alone would keep the last `kind` and run a sleep.
        let e = err(r#"{"kind":"echo","kind":"sleep","ms":1}"#);
        assert_eq!(e.field, "kind");
        assert!(e.reason.contains("appears twice"), "{e}");
        let e = err(r#"{"kind":"exec","command":"x","args":[{"a":1,"a":2}]}"#);
        assert_eq!(e.field, "args[0].a");
    }

    #[test]
    fn good_jobs_parse() {
        let spec = JobSpec::from_json(br#"{"kind":"sleep","ms":5,"timeout_ms":100}"#).unwrap();
        assert_eq!(spec.kind, JobKind::Sleep { ms: 5 });
        assert_eq!(spec.timeout_ms, Some(100));
        let spec = JobSpec::from_json(br#"{"kind":"echo","data":"hi"}"#).unwrap();
        assert_eq!(spec.kind, JobKind::Echo { data: "hi".into() });
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            serde_json::json!({"kind":"echo","data":"hi"})
        );
    }

    #[test]
    fn bad_jobs_name_the_field() {
        assert_eq!(err("not json").field, "body");
        assert_eq!(err("[1]").field, "body");
        assert_eq!(err(r#"{"ms":5}"#).field, "kind");
        assert_eq!(err(r#"{"kind":"fly","ms":5}"#).field, "kind");
        assert_eq!(err(r#"{"kind":"sleep"}"#).field, "ms");
        assert_eq!(err(r#"{"kind":"sleep","ms":-1}"#).field, "ms");
        assert_eq!(err(r#"{"kind":"sleep","ms":1.5}"#).field, "ms");
        assert_eq!(err(r#"{"kind":"spin","ms":3600001}"#).field, "ms");
        assert_eq!(
            err(r#"{"kind":"sleep","ms":5,"colour":"red"}"#).field,
            "colour"
        );
        assert_eq!(err(r#"{"kind":"echo"}"#).field, "data");
        assert_eq!(err(r#"{"kind":"echo","data":7}"#).field, "data");
        assert_eq!(
            err(r#"{"kind":"sleep","ms":5,"timeout_ms":0}"#).field,
            "timeout_ms"
        );
        assert!(err(r#"{"kind":"spin","ms":3600001}"#)
            .reason
            .contains("3600000"));
    }

    #[test]
    fn exec_jobs_parse_and_bad_ones_name_the_field() {
        let spec = JobSpec::from_json(
            br#"{"kind":"exec","command":"wc","args":["-l"],"stdin":"a\nb","timeout_ms":5}"#,
        )
        .unwrap();
        assert_eq!(
            spec.kind,
            JobKind::Exec {
                command: "wc".into(),
                args: vec!["-l".into()],
                stdin: Some("a\nb".into()),
            }
        );
        assert_eq!(spec.kind.command(), Some("wc"));
        let bare = JobSpec::from_json(br#"{"kind":"exec","command":"date"}"#).unwrap();
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            serde_json::json!({"kind":"exec","command":"date"})
        );
        assert_eq!(
            JobSpec::from_value(&serde_json::to_value(&spec).unwrap()).unwrap(),
            spec,
            "what a forward sends parses back to the same job"
        );

        assert_eq!(err(r#"{"kind":"exec"}"#).field, "command");
        assert_eq!(err(r#"{"kind":"exec","command":7}"#).field, "command");
        assert_eq!(err(r#"{"kind":"exec","command":"Up"}"#).field, "command");
        assert_eq!(err(r#"{"kind":"exec","command":""}"#).field, "command");
        let long = format!(r#"{{"kind":"exec","command":"{}"}}"#, "a".repeat(33));
        assert_eq!(err(&long).field, "command");
        assert_eq!(
            err(r#"{"kind":"exec","command":"a","args":"x"}"#).field,
            "args"
        );
        assert_eq!(
            err(r#"{"kind":"exec","command":"a","args":["x",1]}"#).field,
            "args[1]"
        );
        assert_eq!(
            err(r#"{"kind":"exec","command":"a","args":["x\u0000y"]}"#).field,
            "args[0]"
        );
        let many = format!(
            r#"{{"kind":"exec","command":"a","args":[{}]}}"#,
            vec!["\"x\""; 33].join(",")
        );
        assert_eq!(err(&many).field, "args");
        let big_arg = format!(
            r#"{{"kind":"exec","command":"a","args":["{}"]}}"#,
            "x".repeat(MAX_EXEC_ARG_BYTES + 1)
        );
        assert_eq!(err(&big_arg).field, "args[0]");
        let big_stdin = format!(
            r#"{{"kind":"exec","command":"a","stdin":"{}"}}"#,
            "x".repeat(MAX_EXEC_STDIN_BYTES + 1)
        );
        assert_eq!(err(&big_stdin).field, "stdin");
        assert_eq!(
            err(r#"{"kind":"exec","command":"a","stdin":[]}"#).field,
            "stdin"
        );
        assert_eq!(
            err(r#"{"kind":"exec","command":"a","data":"x"}"#).field,
            "data"
        );
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

    #[test]
    fn job_ids_print_and_parse_as_hex() {
        let id = JobId(0xdead_beef);
        assert_eq!(id.to_string(), "00000000deadbeef");
        assert_eq!("00000000deadbeef".parse::<JobId>(), Ok(id));
        assert!("xyz".parse::<JobId>().is_err());
        assert!("+0000000deadbeef".parse::<JobId>().is_err());
    }
}
