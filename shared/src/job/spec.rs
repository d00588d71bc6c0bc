//! What to run: a job as submitted, checked field by field, and why one is refused.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::json::{self, JsonRefusal};

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
    /// Keeps one CPU busy until it has used `ms` milliseconds of CPU time (longer in wall time
    /// on a node whose CPU is shared or throttled).
    Spin {
        /// How much CPU time.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
