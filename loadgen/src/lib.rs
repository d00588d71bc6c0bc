//! `loadgen`: Hearsay's benchmark. It drives a cluster with a reproducible workload, measures
//! how well the jobs were balanced, and sets the measurements beside simple baselines and
//! queueing theory.
//!
//! # Layout
//! - [`workload`]: a seed and a shape expand into the same jobs at the same instants, always.
//! - [`client`]: pooled HTTP/1.1 to the workers: `/v1/cluster`, and a job until its outcome.
//! - [`bench`](mod@bench): one open-loop run of a workload: cluster placement, or loadgen's random and
//!   join-shortest-queue baselines with forwarding off.
//! - [`stats`]: exact percentiles, means and their standard errors.
//! - [`report`]: a run summed up, the comparison table, the JSON report.
//! - [`sim`]: the same jobs through ideal FIFO queues, to tell overhead from sampling.
//! - [`theory`]: M/M/1, the supermarket model and M/M/c (Erlang C), for the reference lines.
//! - [`chart`]: the sojourn-time tails of every run and of the theory, as SVG.
//! - [`cluster`]: local `worker` processes on loopback, killed on drop.
//! - [`moves`]: the steal requests the workers sent during a run.
//! - [`cli`]: the command line, and `loadgen bench`.
//! - [`demo`]: `loadgen demo`, one command from nothing to a comparison of policies.
//! - [`signals`]: ctrl-c and SIGTERM.
//! - [`watch`]: `loadgen watch`, a worker's load map in the terminal.
//! - [`operator`]: `hearsay`, the operators' client: members, jobs, the terminal view, keys —
//!   `mod.rs` the commands run against a worker and their exit codes, `args.rs` the command line
//!   (clap; the completions and the manual page made from it), `text.rs` what is printed for
//!   people (an outcome, the members and a page of jobs as tables).

#![warn(missing_docs)]

pub mod bench;
pub mod chart;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod demo;
pub mod moves;
pub mod operator;
pub mod report;
pub mod signals;
pub mod sim;
pub mod stats;
pub mod theory;
pub mod watch;
pub mod workload;
