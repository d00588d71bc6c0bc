//! CPU time used so far, from `getrusage`: by the calling thread (what a `spin` job counts) or
//! by the whole worker process (what the load sampler subtracts from its cgroup's use to see
//! what others used).

use std::time::Duration;

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeVal;

/// User plus system CPU time of the calling thread so far.
pub(crate) fn thread() -> Option<Duration> {
    of(UsageWho::RUSAGE_THREAD)
}

/// User plus system CPU time of this process so far, all its threads (ended ones included).
pub(crate) fn process() -> Option<Duration> {
    of(UsageWho::RUSAGE_SELF)
}

fn of(who: UsageWho) -> Option<Duration> {
    let usage = getrusage(who).ok()?;
    let micros = |t: TimeVal| {
        let us = i128::from(t.tv_sec()) * 1_000_000 + i128::from(t.tv_usec());
        u64::try_from(us).ok()
    };
    Some(Duration::from_micros(
        micros(usage.user_time())?.checked_add(micros(usage.system_time())?)?,
    ))
}
