//! What each kind of job does when it runs: `sleep` waits on tokio's timer, `spin` uses a CPU on
//! the blocking pool until it has had its milliseconds of CPU time, `echo` answers with its
//! data, `exec` runs a declared command as a process ([`super::process`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hearsay_shared::{JobKind, JobSpec};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::commands::Commands;
use super::process::{self, ExecEnd};

/// How a job's run ended; an `exec` job's output goes with every end.
pub(super) enum Ending {
    Succeeded(Option<Value>),
    Failed(String, Option<Value>),
    TimedOut(Duration, Option<Value>),
    Abandoned,
    /// Not started: its start could not be written to the job store, and a job whose start
    /// a restart would not know of could run twice.
    Unrecorded(String),
    /// Stopped by a forced cancel (never made by [`perform`]: the slot turns the `Abandoned`
    /// of a job it was told to cancel into this).
    Cancelled,
}

/// Runs one job to its end: done, past its timeout, or abandoned (`abandon` cancelled: the
/// drain ran out of time, or a forced cancel).
pub(super) async fn perform(
    spec: JobSpec,
    commands: &Commands,
    abandon: &CancellationToken,
) -> Ending {
    let timeout = spec.timeout_ms.map(Duration::from_millis);
    let expired = async {
        match timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    let timed_out = || Ending::TimedOut(timeout.unwrap_or_default(), None);
    match spec.kind {
        JobKind::Echo { data } => Ending::Succeeded(Some(Value::String(data))),
        JobKind::Exec {
            command,
            args,
            stdin,
        } => {
            // Checked by the API before the job was taken; checked again here, as the job
            // could in principle come from anywhere.
            let Some(declared) = commands.get(&command) else {
                return Ending::Failed(
                    format!("command {command:?} is not declared on this node"),
                    None,
                );
            };
            let argv = match declared.argv(&args) {
                Ok(argv) => argv,
                Err(e) => return Ending::Failed(e.to_string(), None),
            };
            let timeout = declared.timeout_for(spec.timeout_ms);
            let output = |out: process::ExecOutput| serde_json::to_value(out).ok();
            match process::run(declared, &argv, stdin.as_deref(), timeout, abandon).await {
                ExecEnd::Ended(out) if out.exit_code == Some(0) => Ending::Succeeded(output(out)),
                ExecEnd::Ended(out) => {
                    let error = match (out.exit_code, out.signal) {
                        (Some(code), _) => format!("{command} exited with code {code}"),
                        (None, Some(signal)) => format!("{command} was killed by signal {signal}"),
                        (None, None) => format!("{command} ended, but how is unknown"),
                    };
                    Ending::Failed(error, output(out))
                }
                ExecEnd::TimedOut(out) => Ending::TimedOut(timeout, output(out)),
                ExecEnd::Abandoned(_) => Ending::Abandoned,
                ExecEnd::CannotStart(error) => Ending::Failed(error, None),
            }
        }
        JobKind::Sleep { ms } => tokio::select! {
            // The job's own end first: a job that finishes as its timeout expires succeeded.
            biased;
            () = tokio::time::sleep(Duration::from_millis(ms)) => Ending::Succeeded(None),
            () = expired => timed_out(),
            () = abandon.cancelled() => Ending::Abandoned,
        },
        JobKind::Spin { ms } => {
            let stop = Arc::new(AtomicBool::new(false));
            let mut thread = tokio::task::spawn_blocking({
                let stop = Arc::clone(&stop);
                move || spin(Duration::from_millis(ms), &stop)
            });
            let early = tokio::select! {
                biased;
                joined = &mut thread => return match joined {
                    Ok(()) => Ending::Succeeded(None),
                    Err(e) => Ending::Failed(format!("the spinning thread failed: {e}"), None),
                },
                () = expired => timed_out(),
                () = abandon.cancelled() => Ending::Abandoned,
            };
            stop.store(true, Ordering::Relaxed);
            // The slot stays taken until its CPU is free again; the thread sees the flag
            // within microseconds.
            let _ = thread.await;
            early
        }
    }
}

/// Keeps this thread busy until it has used `cpu` of CPU time (user and system), or until `stop`
/// is set.
///
/// CPU time, not wall time: on a node whose CPU is shared or throttled (a cgroup quota, another
/// busy process) a spin job takes longer in wall time, as real CPU-bound work does, so CPU
/// pressure shows in its sojourn. A thread that cannot read its CPU time (which Linux does not
/// refuse) counts wall time instead.
fn spin(cpu: Duration, stop: &AtomicBool) {
    let wall_start = std::time::Instant::now();
    let start = crate::cpu_time::thread();
    let spent = || match (start, crate::cpu_time::thread()) {
        (Some(start), Some(now)) => now.saturating_sub(start),
        _ => wall_start.elapsed(),
    };
    // A few microseconds of spinning between two readings: a reading is one system call, and
    // the flag is still seen at once.
    while !stop.load(Ordering::Relaxed) && spent() < cpu {
        for _ in 0..1_000 {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spin_counts_its_cpu_time() {
        let before = crate::cpu_time::thread().expect("Linux gives a thread its CPU time");
        spin(Duration::from_millis(30), &AtomicBool::new(false));
        let used = crate::cpu_time::thread().unwrap() - before;
        assert!(used >= Duration::from_millis(30), "used {used:?}");
    }

    #[test]
    fn a_set_flag_stops_a_spin_at_once() {
        // Judged by the CPU the spin used, which a busy machine does not stretch as it does
        // wall time: far below the ten minutes asked for.
        let before = crate::cpu_time::thread().unwrap();
        spin(Duration::from_secs(600), &AtomicBool::new(true));
        let used = crate::cpu_time::thread().unwrap() - before;
        assert!(used < Duration::from_millis(100), "used {used:?}");
    }
}
