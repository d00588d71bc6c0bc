//! `loadgen`: parses the command line and runs the command; every error ends as one line on
//! stderr and a non-zero exit, and ctrl-c stops every worker it started.

use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;
use hearsay_loadgen::cli::{self, Cli, Command};
use hearsay_loadgen::{demo, signals, watch};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            // clap's message is several lines (a tip, the usage); the first says what is wrong.
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("loadgen: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("loadgen")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadgen: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let command = match cli.command {
            // The watch waits for ctrl-c itself, restores the terminal and ends cleanly.
            Command::Watch(args) => return Some(watch::watch(args).await),
            Command::Bench(args) => Box::pin(cli::bench(args))
                as std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>>,
            Command::Demo(args) => Box::pin(demo::demo(args)),
        };
        // On a signal the command's future is dropped, and with it every local cluster, whose
        // workers are killed on drop.
        tokio::select! {
            result = command => Some(result),
            () = signals::interrupted() => None,
        }
    });
    // Jobs still in flight are abandoned; their tasks hold nothing that needs closing.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(e)) => {
            eprintln!("loadgen: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
        None => {
            eprintln!("loadgen: interrupted; every worker it started is stopped");
            ExitCode::from(130)
        }
    }
}
