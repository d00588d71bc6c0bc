//! `hearsay`: the operators' client (see [`hearsay_loadgen::operator`]). Parses the command
//! line, runs the command, and ends with its exit code; every error is one line on stderr.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use hearsay_loadgen::operator::{self, Cli, Exit};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            // clap's message is several lines (a tip, the usage); the first says what is wrong.
            // A first line that ends in ':' ("required arguments were not provided:") goes on
            // in the next.
            let rendered = e.to_string();
            let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines.next().unwrap_or("invalid arguments").to_owned();
            if first.ends_with(':') {
                if let Some(next) = lines.next() {
                    first = format!("{first} {next}");
                }
            }
            eprintln!("hearsay: {}", first.trim_start_matches("error: "));
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hearsay: cannot start the tokio runtime: {e}");
            return ExitCode::from(Exit::Error as u8);
        }
    };
    match runtime.block_on(operator::run(cli)) {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(failure) => {
            eprintln!(
                "hearsay: {}",
                format!("{:#}", failure.error).replace('\n', " ")
            );
            ExitCode::from(failure.exit as u8)
        }
    }
}
