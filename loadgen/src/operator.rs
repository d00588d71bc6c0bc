//! `hearsay`, the operators' client: the members of a cluster, jobs submitted, listed, read and
//! waited for, a terminal view, a new cluster key. It talks to any worker's HTTP API (`--api`, or
//! `HEARSAY_API`), with the token of `--api-token-file` where the workers want one.
//!
//! Every command prints text for people, or with `--json` the worker's JSON as it came, one
//! document per line, for scripts. Every error is one line on stderr. The exit code says what
//! happened ([`Exit`]): 0 done; 1 the worker could not be reached or refused; 2 the command line
//! is wrong; for a job waited for, 3 failed, 4 timed out, 5 lost, 6 cancelled; 7 a cancel
//! refused because the job runs (without `--force`) or has ended.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Args, CommandFactory, Parser, Subcommand};
use hearsay_shared::{JobOutcome, JobStatus};
use hyper::Method;
use rand::TryRngCore;
use serde_json::{json, Map, Value};

use crate::client::{normalise_target, Http, RequestError};
use crate::watch::{self, NodeRow, WatchArgs};

/// How long one request may take; a wait is a row of long polls of 10 s each, each within it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// `hearsay`: talk to a Hearsay cluster through any of its workers.
#[derive(Debug, Parser)]
#[command(name = "hearsay", version, about, long_about = None)]
pub struct Cli {
    /// A worker's HTTP address (127.0.0.1:8080 or http://127.0.0.1:8080).
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        env = "HEARSAY_API",
        default_value = "127.0.0.1:8080"
    )]
    pub api: String,

    /// The workers' API token file (their `--api-token-file`): sent as `Authorization: Bearer`.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "HEARSAY_API_TOKEN_FILE"
    )]
    pub api_token_file: Option<PathBuf>,

    /// Print the worker's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The nodes the worker knows: id, addresses, state, load, report age, incarnation.
    Members,
    /// Submit a job: from flags, a JSON text or a file; with --wait, print its outcome.
    Submit(SubmitArgs),
    /// The jobs the worker holds or answers for, by id: one page (--limit), from --after.
    Jobs(JobsArgs),
    /// A job's status and outcome as it stands now.
    Status(JobArgs),
    /// Wait until a job ends and print its outcome; the exit code says how it ended.
    Wait(WaitArgs),
    /// Cancel a job: a queued one is taken out of its queue; a running one only with --force.
    Cancel(CancelArgs),
    /// Make a node leave the cluster gracefully, as SIGTERM does (the --api node, or NODE).
    Drain(DrainArgs),
    /// The worker's load map in the terminal, redrawn in place (as `loadgen watch`).
    Watch(WatchFlags),
    /// A new cluster key (64 hex digits from the OS's random source), for --cluster-key-file.
    Keygen,
    /// A completion script for a shell, from the same definitions as this help.
    Completions(CompletionsArgs),
    /// The manual page (roff), from the same definitions as this help: `hearsay man | man -l -`.
    Man,
}

/// What `completions` writes.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// What `submit` sends.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The job as JSON text, e.g. '{"kind":"echo","data":"hi"}' (instead of --kind and the rest).
    #[arg(value_name = "JSON", conflicts_with_all = ["file", "kind"])]
    pub job: Option<String>,

    /// The job as a JSON file ('-' for standard input).
    #[arg(long, short = 'f', value_name = "PATH", conflicts_with = "kind")]
    pub file: Option<String>,

    /// The job's kind: sleep, spin, echo or exec.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,

    /// Milliseconds, for sleep and spin.
    #[arg(long, value_name = "MS", requires = "kind")]
    pub ms: Option<u64>,

    /// The text an echo job returns.
    #[arg(long, value_name = "TEXT", requires = "kind")]
    pub data: Option<String>,

    /// The declared command an exec job runs.
    #[arg(long, value_name = "NAME", requires = "kind")]
    pub command: Option<String>,

    /// An argument of the exec job's command (repeat for more).
    #[arg(
        long = "arg",
        value_name = "ARG",
        requires = "kind",
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,

    /// Standard input of the exec job's command.
    #[arg(long, value_name = "TEXT", requires = "kind")]
    pub stdin: Option<String>,

    /// Stop the job if it runs longer, in milliseconds.
    #[arg(long, value_name = "MS", requires = "kind")]
    pub timeout_ms: Option<u64>,

    /// An Idempotency-Key: the same key and job again names the same job, and runs nothing new.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,

    /// Wait for the job's end and print its outcome; the exit code says how it ended.
    #[arg(long)]
    pub wait: bool,
}

/// The jobs to list.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only the jobs of these statuses, comma-separated: queued, running, succeeded, failed,
    /// timed_out, lost, cancelled.
    #[arg(long, value_name = "LIST", value_parser = parse_statuses)]
    pub status: Option<String>,

    /// The most jobs to list (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,

    /// List the jobs whose id comes after this one (the `next` a list printed).
    #[arg(long, value_name = "ID")]
    pub after: Option<String>,
}

/// `--status`: one or more statuses' names, comma-separated.
fn parse_statuses(text: &str) -> Result<String, String> {
    for name in text.split(',') {
        if !JobStatus::ALL.iter().any(|s| s.as_str() == name) {
            let names: Vec<_> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
            return Err(format!(
                "{name:?} is not a job status; one or more of {}, comma-separated",
                names.join(", ")
            ));
        }
    }
    Ok(text.to_owned())
}

/// A job, by id.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job's id (16 hex digits), as `submit` printed it.
    #[arg(value_name = "ID")]
    pub id: String,
}

/// A job to cancel.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The job's id (16 hex digits), as `submit` printed it.
    #[arg(value_name = "ID")]
    pub id: String,

    /// Stop the job even if it is running (an exec job's process is killed).
    #[arg(long)]
    pub force: bool,
}

/// A node to drain.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The node: a member id or API address from the --api node's load map [default: the
    /// --api node itself].
    #[arg(value_name = "NODE")]
    pub node: Option<String>,
}

/// A job to wait for.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The job's id (16 hex digits), as `submit` printed it.
    #[arg(value_name = "ID")]
    pub id: String,

    /// Give up after this many seconds (exit 1).
    #[arg(long, value_name = "S", default_value_t = 3600)]
    pub timeout: u64,
}

/// `watch`'s own flags (the worker is `--api`).
#[derive(Debug, Args)]
pub struct WatchFlags {
    /// Milliseconds between two reads of the worker's /v1/cluster.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub interval: u64,

    /// Print one frame, without escapes or colour, and exit.
    #[arg(long)]
    pub once: bool,

    /// Lines of the frame [default: $LINES, else 50].
    #[arg(long, value_name = "N")]
    pub rows: Option<usize>,

    /// No colour, even on a terminal (also when NO_COLOR is set).
    #[arg(long)]
    pub no_color: bool,
}

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

/// The completion script for `shell`, generated from [`Cli`]'s definitions.
pub fn completions(shell: clap_complete::Shell) -> Result<String> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hearsay", &mut script);
    String::from_utf8(script).context("the completion script is not UTF-8")
}

/// The manual page in roff, generated from [`Cli`]'s definitions.
pub fn manual() -> Result<String> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("cannot render the manual page")?;
    String::from_utf8(page).context("the manual page is not UTF-8")
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

/// The job's JSON body from `submit`'s arguments.
fn job_body(args: &SubmitArgs) -> Result<Vec<u8>> {
    if let Some(text) = &args.job {
        return checked_json(text.as_bytes(), "the JSON argument");
    }
    if let Some(path) = &args.file {
        let bytes = if path == "-" {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("cannot read standard input")?;
            bytes
        } else {
            std::fs::read(path).with_context(|| format!("cannot read {path}"))?
        };
        return checked_json(&bytes, path);
    }
    let Some(kind) = &args.kind else {
        bail!("say what to run: --kind (with its fields), a JSON text, or --file");
    };
    let mut job = Map::new();
    job.insert("kind".into(), json!(kind));
    if let Some(ms) = args.ms {
        job.insert("ms".into(), json!(ms));
    }
    if let Some(data) = &args.data {
        job.insert("data".into(), json!(data));
    }
    if let Some(command) = &args.command {
        job.insert("command".into(), json!(command));
    }
    if !args.args.is_empty() {
        job.insert("args".into(), json!(args.args));
    }
    if let Some(stdin) = &args.stdin {
        job.insert("stdin".into(), json!(stdin));
    }
    if let Some(timeout) = args.timeout_ms {
        job.insert("timeout_ms".into(), json!(timeout));
    }
    Ok(Value::Object(job).to_string().into_bytes())
}

/// `bytes` if they are JSON (the worker says what is wrong with the job itself).
fn checked_json(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    serde_json::from_slice::<Value>(bytes).with_context(|| format!("{what} is not JSON"))?;
    Ok(bytes.to_vec())
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
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
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
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(args: &[&str]) -> SubmitArgs {
        let mut all = vec!["hearsay", "submit"];
        all.extend(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Submit(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_job_from_flags_is_the_json_the_worker_takes() {
        let body = job_body(&submit(&[
            "--kind",
            "exec",
            "--command",
            "resize",
            "--arg",
            "-x",
            "--arg",
            "b",
            "--timeout-ms",
            "500",
        ]))
        .unwrap();
        let job: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            job,
            json!({"kind": "exec", "command": "resize", "args": ["-x", "b"], "timeout_ms": 500})
        );
        let body = job_body(&submit(&["--kind", "sleep", "--ms", "20"])).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"kind": "sleep", "ms": 20})
        );
    }

    #[test]
    fn a_job_text_that_is_not_json_or_no_job_at_all_is_refused() {
        let e = job_body(&submit(&["{kind: echo}"])).unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
        let e = job_body(&submit(&[])).unwrap_err();
        assert!(e.to_string().contains("--kind"), "{e}");
        // A field without a kind is a usage error of clap's.
        assert!(Cli::try_parse_from(["hearsay", "submit", "--ms", "5"]).is_err());
    }

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

    #[test]
    fn a_status_list_is_job_statuses() {
        assert!(parse_statuses("queued,timed_out").is_ok());
        assert!(parse_statuses("done").is_err());
        assert!(parse_statuses("queued,").is_err());
    }

    #[test]
    fn completions_and_the_manual_name_every_command() {
        let bash = completions(clap_complete::Shell::Bash).unwrap();
        let page = manual().unwrap();
        for command in [
            "members", "submit", "jobs", "status", "wait", "watch", "keygen",
        ] {
            assert!(bash.contains(command), "bash completions lack {command}");
            assert!(page.contains(command), "the manual lacks {command}");
        }
        assert!(bash.contains("--api-token-file"));
        assert!(
            page.starts_with(".ie") || page.contains(".TH"),
            "not roff: {page:.80}"
        );
    }
}
