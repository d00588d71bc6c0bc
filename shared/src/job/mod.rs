//! The job vocabulary of the HTTP API: what to run ([`JobSpec`]), its name ([`JobId`]), and what
//! became of it ([`JobStatus`], [`JobOutcome`]).
//!
//! A job arrives as JSON and is checked field by field, so that a bad one is refused with an
//! error that names the field and the reason ([`JobError`]) rather than a parser's message.
//!
//! # Layout
//! - `spec.rs`: [`JobSpec`] and [`JobKind`], read from JSON field by field, with their limits
//!   and [`JobError`].
//! - `id.rs`: [`JobId`], 16 hex digits.
//! - `outcome.rs`: [`JobStatus`] and [`JobOutcome`], and how an outcome is kept within its
//!   limits.

mod id;
mod outcome;
mod spec;

pub use id::{BadJobId, JobId};
pub use outcome::{JobOutcome, JobStatus, MAX_ERROR_BYTES, MAX_OUTPUT_VALUES};
pub use spec::{
    check_command_name, JobError, JobKind, JobSpec, MAX_COMMAND_NAME_BYTES, MAX_ECHO_BYTES,
    MAX_EXEC_ARGS, MAX_EXEC_ARG_BYTES, MAX_EXEC_STDIN_BYTES, MAX_JOB_MS, MAX_JSON_DEPTH,
};
