//! `hearsay`'s command line: the flags every command takes ([`Cli`]), the commands and their
//! arguments (clap), the completion scripts and the manual page generated from them, and the
//! job that `submit`'s arguments make.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use hearsay_shared::JobStatus;
use serde_json::{json, Map, Value};

/// `hearsay`: talk to a Hearsay cluster through any of its workers.
#[derive(Debug, Parser)]
// The about line is this command's own: `about` alone would take the package's, which
// describes `loadgen`.
#[command(
    name = "hearsay",
    version,
    about = "Talk to a Hearsay cluster through any of its workers: members, jobs (submit, \
             status, wait, list, cancel), drain, watch, keys",
    long_about = None
)]
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

/// The job's JSON body from `submit`'s arguments.
pub(super) fn job_body(args: &SubmitArgs) -> Result<Vec<u8>> {
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
        // The client's own description, not the package's (which is loadgen's).
        let help = Cli::command().render_help().to_string();
        assert!(help.starts_with("Talk to a Hearsay cluster"), "{help:.80}");
        assert!(
            page.starts_with(".ie") || page.contains(".TH"),
            "not roff: {page:.80}"
        );
    }
}
