//! Running a declared command for an `exec` job: one real process, never a shell.
//!
//! - The program is the declared absolute path and its argument vector the checked template
//!   ([`crate::jobs::commands`]); nothing is interpreted by a shell.
//! - The environment is cleared (no `PATH`, `HOME`, nor anything of the worker's own, secrets
//!   included); the working directory is `/`.
//! - Standard input is the job's `stdin`, written and then closed (or `/dev/null` without one).
//! - Standard output and error are read at the same time, each kept up to the command's
//!   `max_output_bytes` and the rest read and thrown away, so the program never blocks on a full
//!   pipe; a flag says when a stream was cut.
//! - The program leads a process group of its own. When its timeout passes, or the job is
//!   abandoned (its node's drain ran out of time, or the node stops), the whole group is killed
//!   with `SIGKILL` and the program reaped. When the program exits by itself, whatever it left
//!   running in its group is killed too, so a job leaves nothing behind (a process that moved to
//!   another group or session on purpose escapes this; that needs cgroups).

use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::jobs::commands::Command;

/// After the group is killed, how long the pipes may take to close before the output read so
/// far is taken as it is (a process that left the group could hold them open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// What a run produced: its exit and its output. The `output` of the job's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecOutput {
    /// The exit code, when the program exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did (9 after a timeout).
    pub signal: Option<i32>,
    /// Its standard output, at most `max_output_bytes`, as UTF-8 (invalid bytes replaced).
    pub stdout: String,
    /// Its standard error, the same way.
    pub stderr: String,
    /// Whether standard output was longer than what is kept.
    pub stdout_truncated: bool,
    /// Whether standard error was longer than what is kept.
    pub stderr_truncated: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEnd {
    /// The program ended by itself (an exit code or a signal, in the output).
    Ended(ExecOutput),
    /// Its timeout passed; the group was killed.
    TimedOut(ExecOutput),
    /// The job was abandoned; the group was killed.
    Abandoned(ExecOutput),
    /// The program could not be started.
    CannotStart(String),
}

/// One stream as read so far.
#[derive(Debug, Default)]
struct Captured {
    kept: Vec<u8>,
    truncated: bool,
}

/// Runs `command` with `argv`, feeding it `stdin`, for at most `timeout`, or until `abandon`.
pub async fn run(
    command: &Command,
    argv: &[String],
    stdin: Option<&str>,
    timeout: Duration,
    abandon: &CancellationToken,
) -> ExecEnd {
    let mut child = match tokio::process::Command::new(&command.program)
        .args(argv)
        .env_clear()
        .current_dir("/")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so that a timeout kills its children too.
        .process_group(0)
        // If this future is dropped (the node is killed), the program goes with it.
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            return ExecEnd::CannotStart(format!("cannot start {}: {e}", command.program.display()))
        }
    };
    let Some(group) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
    else {
        return ExecEnd::CannotStart("the program ended before it could be watched".into());
    };
    let cap = command.max_output_bytes;
    let (stdin_pipe, stdout_pipe, stderr_pipe) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let mut out = Captured::default();
    let mut err = Captured::default();

    let feed = async {
        if let (Some(mut pipe), Some(data)) = (stdin_pipe, stdin) {
            // A program that exits without reading all of it breaks the pipe: not an error.
            let _ = pipe.write_all(data.as_bytes()).await;
            // Dropping the pipe closes it: the program reads end of file.
        }
    };
    let wait = async {
        let status = child.wait().await;
        // The leader is gone: so must be anything it left running in its group.
        kill_group(group);
        status
    };
    // Boxed, so that dropping it ends the borrows of the buffers.
    let mut run = Box::pin(async {
        let (status, (), (), ()) = tokio::join!(
            wait,
            feed,
            capture(stdout_pipe, cap, &mut out),
            capture(stderr_pipe, cap, &mut err)
        );
        status
    });
    enum Cut {
        TimedOut,
        Abandoned,
    }
    let cut = tokio::select! {
        // The program's own end first: one that ends as its timeout passes ended by itself.
        biased;
        status = &mut run => Ok(status),
        () = tokio::time::sleep(timeout) => Err(Cut::TimedOut),
        () = abandon.cancelled() => Err(Cut::Abandoned),
    };
    let (status, cut) = match cut {
        Ok(status) => (Some(status), None),
        Err(cut) => {
            kill_group(group);
            // Reaps the program and reads what the pipes still hold.
            (
                tokio::time::timeout(DRAIN_GRACE, &mut run).await.ok(),
                Some(cut),
            )
        }
    };
    drop(run);
    let status: Option<ExitStatus> = status.and_then(Result::ok);
    let output = ExecOutput {
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stdout: String::from_utf8_lossy(&out.kept).into_owned(),
        stderr: String::from_utf8_lossy(&err.kept).into_owned(),
        stdout_truncated: out.truncated,
        stderr_truncated: err.truncated,
    };
    match cut {
        None => ExecEnd::Ended(output),
        Some(Cut::TimedOut) => ExecEnd::TimedOut(output),
        Some(Cut::Abandoned) => ExecEnd::Abandoned(output),
    }
}

/// Sends `SIGKILL` to every process of the group. A group that is gone already is no error.
fn kill_group(group: Pid) {
    if let Err(e) = killpg(group, Signal::SIGKILL) {
        if e != nix::errno::Errno::ESRCH {
            debug!(group = group.as_raw(), error = %e, "cannot kill a job's process group");
        }
    }
}

/// Reads `pipe` to its end, keeping at most `cap` bytes in `into`; the rest is read and
/// dropped, so the writer never blocks.
async fn capture(pipe: Option<impl AsyncRead + Unpin>, cap: usize, into: &mut Captured) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = cap.saturating_sub(into.kept.len());
                into.kept.extend_from_slice(&buf[..n.min(room)]);
                if n > room {
                    into.truncated = true;
                }
            }
        }
    }
}
