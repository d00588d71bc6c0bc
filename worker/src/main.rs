//! `worker`: a Hearsay node. Parses the configuration and hands it to the library.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use hearsay_worker::{Config, StartError};

fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            // clap's message is several lines (a tip, the usage); the first says what is wrong.
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("worker: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match hearsay_worker::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the causes joined with ": ".
            eprintln!("worker: {}", format!("{e:#}").replace('\n', " "));
            // A setting out of range is a usage error, like a flag clap refuses.
            match e.downcast_ref::<StartError>() {
                Some(StartError::Invalid(_) | StartError::ConfigFile(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
