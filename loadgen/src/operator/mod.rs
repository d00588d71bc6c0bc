//! `hearsay`, the operators' client: the members of a cluster, jobs submitted, listed, read and
//! waited for, a terminal view, a new cluster key. It talks to any worker's HTTP API (`--api`, or
//! `HEARSAY_API`), with the token of `--api-token-file` where the workers want one.
//!
//! Every command prints text for people, or with `--json` the worker's JSON as it came, one
//! document per line, for scripts. Every error is one line on stderr. The exit code says what
//! happened ([`Exit`]): 0 done; 1 the worker could not be reached or refused; 2 the command line
//! is wrong; for a job waited for, 3 failed, 4 timed out, 5 lost, 6 cancelled; 7 a cancel
//! refused because the job runs (without `--force`) or has ended.
//!
//! This file runs the commands against the worker and says how they ended; `args.rs` holds the
//! command line, and `text.rs` what is printed for people.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hearsay_shared::{JobOutcome, JobStatus};
use hyper::Method;
use rand::TryRngCore;
use serde_json::Value;

use crate::client::{normalise_target, Http, RequestError};
use crate::watch::{self, WatchArgs};
use args::job_body;

mod args;
mod text;

pub use args::{
    completions, manual, CancelArgs, Cli, Command, CompletionsArgs, DrainArgs, JobArgs, JobsArgs,
    SubmitArgs, WaitArgs, WatchFlags,
};
pub use text::{incarnation_time, jobs_table, members_table, outcome_text};

/// How long one request may take; a wait is a row of long polls of 10 s each, each within it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How a command ended, as the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; a job waited for succeeded.
    Done = 0,
    /// The worker could not be reached, or refused.
    Error = 1,
    /// The command line is wrong.
    Usage = 2,
    /// The job waited for failed.
    Failed = 3,
    /// The job waited for ran past its timeout.
    TimedOut = 4,
    /// The job waited for is lost: its node stopped before it was known to end.
    Lost = 5,
    /// The job waited for was cancelled.
    Cancelled = 6,
    /// A cancel was refused: the job is running (and `--force` was not given) or has ended.
    Refused = 7,
}

impl Exit {
    /// The code for a job that ended with `status`.
    pub fn of(status: JobStatus) -> Exit {
        match status {
            JobStatus::Failed => Exit::Failed,
            JobStatus::TimedOut => Exit::TimedOut,
            JobStatus::Lost => Exit::Lost,
            JobStatus::Cancelled => Exit::Cancelled,
            JobStatus::Succeeded | JobStatus::Queued | JobStatus::Running => Exit::Done,
        }
    }
}

/// A command that could not be carried out, and the exit it ends with.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// The one line that says why.
    pub error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure {
            exit: Exit::Error,
            error,
        }
    }
}

fn usage(error: anyhow::Error) -> Failure {
    Failure {
        exit: Exit::Usage,
        error,
    }
}

/// Runs the command; what it prints goes to stdout.
pub async fn run(cli: Cli) -> Result<Exit, Failure> {
    let base =
        normalise_target(&cli.api).map_err(|e| usage(anyhow::anyhow!("--api {}: {e}", cli.api)))?;
    let http = Http::new(Duration::from_secs(2))
        .with_token_file(cli.api_token_file.as_deref())
        .map_err(|e| usage(anyhow::anyhow!("--api-token-file: {e}")))?;
    let client = Client {
        http,
        base,
        json: cli.json,
    };
    match cli.command {
        Command::Members => client.members().await,
        Command::Submit(args) => client.submit(args).await,
        Command::Jobs(args) => client.jobs(&args).await,
        Command::Status(args) => client.status(&args.id).await,
        Command::Wait(args) => client.wait(&args.id, args.timeout).await,
        Command::Cancel(args) => client.cancel(&args).await,
        Command::Drain(args) => client.drain(args.node.as_deref()).await,
        Command::Watch(flags) => {
            let args = WatchArgs {
                url: client.base.clone(),
                interval: flags.interval,
                once: flags.once,
                rows: flags.rows,
                no_color: flags.no_color,
                api_token_file: cli.api_token_file,
            };
            watch::watch(args).await?;
            Ok(Exit::Done)
        }
        Command::Keygen => {
            emit(&format!("{}\n", keygen()?));
            Ok(Exit::Done)
        }
        Command::Completions(args) => {
            emit(&completions(args.shell)?);
            Ok(Exit::Done)
        }
        Command::Man => {
            emit(&manual()?);
            Ok(Exit::Done)
        }
    }
}

/// A new cluster key: 32 bytes from the OS's random source, as 64 hex digits.
pub fn keygen() -> Result<String> {
    let mut key = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .context("the OS's random source")?;
    Ok(key.iter().map(|b| format!("{b:02x}")).collect())
}

struct Client {
    http: Http,
    base: String,
    json: bool,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&'static str, String)],
    ) -> Result<Value> {
        let (_, value) = self
            .http
            .call_json(method, &self.base, path, body, headers, REQUEST_TIMEOUT)
            .await
            .map_err(|e| worker_error(&self.base, &e))?;
        Ok(value)
    }

    async fn members(&self) -> Result<Exit, Failure> {
        let view = self.call(Method::GET, "/v1/cluster", None, &[]).await?;
        if self.json {
            emit(&format!("{view}\n"));
            return Ok(Exit::Done);
        }
        emit(&members_table(&view)?);
        Ok(Exit::Done)
    }

    async fn submit(&self, args: SubmitArgs) -> Result<Exit, Failure> {
        let job = job_body(&args).map_err(usage)?;
        let headers: Vec<(&'static str, String)> = args
            .key
            .iter()
            .map(|k| ("idempotency-key", k.clone()))
            .collect();
        let path = if args.wait {
            "/v1/jobs?wait=true"
        } else {
            "/v1/jobs"
        };
        let answer = self
            .call(Method::POST, path, Some(Bytes::from(job)), &headers)
            .await?;
        if !args.wait {
            let id = answer["id"]
                .as_str()
                .context("the worker's answer has no id")?;
            emit(&if self.json {
                format!("{answer}\n")
            } else {
                format!("{id}\n")
            });
            return Ok(Exit::Done);
        }
        // A 202 after all (the outcome was forgotten at once): follow it like `wait`.
        let outcome = read_outcome(answer)?;
        if !outcome.0.status.is_terminal() {
            let id = outcome.0.id.to_string();
            return self.wait(&id, 3600).await;
        }
        Ok(self.print_outcome(outcome))
    }

    async fn jobs(&self, args: &JobsArgs) -> Result<Exit, Failure> {
        let mut path = format!("/v1/jobs?limit={}", args.limit);
        if let Some(status) = &args.status {
            path.push_str(&format!("&status={status}"));
        }
        if let Some(after) = &args.after {
            let after: hearsay_shared::JobId = after
                .parse()
                .map_err(|e| usage(anyhow::anyhow!("--after: {e}")))?;
            path.push_str(&format!("&after={after}"));
        }
        let page = self.call(Method::GET, &path, None, &[]).await?;
        if self.json {
            emit(&format!("{page}\n"));
            return Ok(Exit::Done);
        }
        emit(&jobs_table(&page)?);
        Ok(Exit::Done)
    }

    async fn status(&self, id: &str) -> Result<Exit, Failure> {
        let answer = self
            .call(Method::GET, &format!("/v1/jobs/{id}"), None, &[])
            .await?;
        let outcome = read_outcome(answer)?;
        self.print_outcome(outcome);
        Ok(Exit::Done)
    }

    async fn wait(&self, id: &str, timeout_s: u64) -> Result<Exit, Failure> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_s);
        loop {
            let answer = self
                .call(Method::GET, &format!("/v1/jobs/{id}?wait=true"), None, &[])
                .await?;
            let outcome = read_outcome(answer)?;
            if outcome.0.status.is_terminal() {
                return Ok(self.print_outcome(outcome));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(anyhow::anyhow!(
                    "job {id} is still {} after {timeout_s} s",
                    outcome.0.status.as_str()
                )
                .into());
            }
        }
    }

    async fn cancel(&self, args: &CancelArgs) -> Result<Exit, Failure> {
        let id: hearsay_shared::JobId = args
            .id
            .parse()
            .map_err(|e| usage(anyhow::anyhow!("ID: {e}")))?;
        let query = if args.force { "?force=true" } else { "" };
        let path = format!("/v1/jobs/{id}{query}");
        let answer = self
            .http
            .call_json(
                Method::DELETE,
                &self.base,
                &path,
                None,
                &[],
                REQUEST_TIMEOUT,
            )
            .await;
        let answer = match answer {
            Ok((_, value)) => value,
            Err(e @ RequestError::Status { status: 409, .. }) => {
                return Err(Failure {
                    exit: Exit::Refused,
                    error: worker_error(&self.base, &e),
                })
            }
            Err(e) => return Err(worker_error(&self.base, &e).into()),
        };
        let outcome = read_outcome(answer)?;
        self.print_outcome(outcome);
        Ok(Exit::Done)
    }

    async fn drain(&self, node: Option<&str>) -> Result<Exit, Failure> {
        let base = match node {
            None => self.base.clone(),
            Some(node) => {
                let view = self.call(Method::GET, "/v1/cluster", None, &[]).await?;
                member_api(&view, node).map_err(|e| usage(anyhow::anyhow!("NODE: {e}")))?
            }
        };
        let (_, answer) = self
            .http
            .call_json(
                Method::POST,
                &base,
                "/v1/drain",
                Some(Bytes::from_static(b"{}")),
                &[],
                REQUEST_TIMEOUT,
            )
            .await
            .map_err(|e| worker_error(&base, &e))?;
        emit(&if self.json {
            format!("{answer}\n")
        } else {
            let node = answer["node"].as_str().unwrap_or("?");
            let already = if answer["already_leaving"] == true {
                " (it was leaving already)"
            } else {
                ""
            };
            format!(
                "{node} is leaving{already}: {} queued, {} running\n",
                answer["queued"], answer["running"]
            )
        });
        Ok(Exit::Done)
    }

    /// Prints an outcome; the exit its status gives.
    fn print_outcome(&self, (outcome, raw): (JobOutcome, Value)) -> Exit {
        emit(&if self.json {
            format!("{raw}\n")
        } else {
            outcome_text(&outcome)
        });
        Exit::of(outcome.status)
    }
}

/// The API base of member `node` (its id, or its API address) in the load map `view`.
fn member_api(view: &Value, node: &str) -> Result<String> {
    let wanted = normalise_target(node).ok();
    let nodes = view["nodes"]
        .as_array()
        .context("the load map has no nodes")?;
    for member in nodes {
        let api = member["api"].as_str().unwrap_or_default();
        let api_base = normalise_target(api).ok();
        if member["id"].as_str() == Some(node) || (api_base.is_some() && api_base == wanted) {
            return normalise_target(api).map_err(|e| anyhow::anyhow!("{node}'s API {api}: {e}"));
        }
    }
    let ids: Vec<&str> = nodes.iter().filter_map(|n| n["id"].as_str()).collect();
    bail!(
        "{node:?} is not a member id or API address the worker knows; the members: {}",
        ids.join(", ")
    )
}

/// Writes `text` to stdout. A reader that went away (`hearsay members | head -1`) is not an
/// error: what it wanted it has.
fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The outcome, typed, and as the worker wrote it.
fn read_outcome(answer: Value) -> Result<(JobOutcome, Value)> {
    let outcome = serde_json::from_value(answer.clone())
        .with_context(|| format!("the worker's answer is not a job outcome: {answer}"))?;
    Ok((outcome, answer))
}

/// One line for a request that failed.
fn worker_error(base: &str, e: &RequestError) -> anyhow::Error {
    match e {
        RequestError::Status {
            status,
            code,
            message,
        } => anyhow::anyhow!("{base} answered {status} {code}: {message}"),
        RequestError::Busy { code, .. } => {
            anyhow::anyhow!("{base} answered 503 {code}: it cannot take this now; try again")
        }
        other => anyhow::anyhow!("{base}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_status() {
        assert_eq!(Exit::of(JobStatus::Succeeded) as u8, 0);
        assert_eq!(Exit::of(JobStatus::Failed) as u8, 3);
        assert_eq!(Exit::of(JobStatus::TimedOut) as u8, 4);
        assert_eq!(Exit::of(JobStatus::Lost) as u8, 5);
        assert_eq!(Exit::of(JobStatus::Cancelled) as u8, 6);
        assert_eq!(Exit::Refused as u8, 7);
    }

    #[test]
    fn a_key_is_64_hex_digits_and_never_the_same() {
        let (a, b) = (keygen().unwrap(), keygen().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
