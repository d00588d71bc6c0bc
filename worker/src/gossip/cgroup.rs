//! The node's CPU figures for its load vector: from its own cgroup when it runs in one it can
//! read (v2 or v1, parsed by [`hearsay_shared::cgroup`]) that has a CPU quota, else from the
//! whole machine ([`CpuSampler`]). Each sample gives the use since the previous one, in per
//! mille of the capacity; the part of it that was not this process's own (the worker's CPU
//! time, from `getrusage`, subtracted); and the capacity in millicores: the cgroup's quota, or
//! the cores.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hearsay_shared::cgroup::{self, CpuSource};

use super::sampler::CpuSampler;

/// Where cgroup file systems are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Samples the node's CPU, from its cgroup or the machine.
#[derive(Debug)]
pub(crate) struct NodeCpu {
    machine: CpuSampler,
    /// `/proc/self/cgroup`, read once: a process does not change its group.
    proc_self_cgroup: Option<String>,
    root: PathBuf,
    cores: u32,
    /// The cgroup's usage counter at the previous sample, and when.
    last: Option<(u64, Instant)>,
    /// The source of the previous sample, to log a change.
    source: Option<CpuSource>,
    /// This process's CPU time at the previous sample, and when.
    own_last: Option<(Duration, Instant)>,
}

/// One sample of [`NodeCpu`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuFigures {
    /// Use of the capacity since the previous sample, in per mille.
    pub(crate) permille: u16,
    /// The part of `permille` that others than this process used.
    pub(crate) outside_permille: u16,
    /// The capacity, in millicores.
    pub(crate) capacity_millicores: u32,
}

impl NodeCpu {
    /// A sampler of this process's cgroup (or the machine).
    pub(crate) fn new() -> Self {
        NodeCpu {
            machine: CpuSampler::new(),
            proc_self_cgroup: std::fs::read_to_string("/proc/self/cgroup").ok(),
            root: PathBuf::from(CGROUP_ROOT),
            cores: std::thread::available_parallelism()
                .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
            last: None,
            source: None,
            own_last: None,
        }
    }

    /// CPU use since the previous sample, the part of it that was others', and the capacity.
    pub(crate) fn sample(&mut self) -> CpuFigures {
        let (permille, capacity_millicores) = self.sample_node();
        let own_permille = self.sample_own(capacity_millicores);
        CpuFigures {
            permille,
            outside_permille: permille.saturating_sub(own_permille),
            capacity_millicores,
        }
    }

    /// This process's CPU use since the previous sample, in per mille of `capacity`: 0 for the
    /// first sample, or if `getrusage` fails (then everything counts as the node's own).
    fn sample_own(&mut self, capacity: u32) -> u16 {
        let Some(used) = crate::cpu_time::process() else {
            return 0;
        };
        let now = Instant::now();
        match self.own_last.replace((used, now)) {
            Some((before, then)) => cgroup::use_permille(
                u64::try_from(used.saturating_sub(before).as_nanos()).unwrap_or(u64::MAX),
                u64::try_from(now.duration_since(then).as_nanos()).unwrap_or(u64::MAX),
                capacity,
            ),
            None => 0,
        }
    }

    /// CPU use since the previous sample (per mille of the capacity) and the capacity (in
    /// millicores).
    fn sample_node(&mut self) -> (u16, u32) {
        // A group without a quota competes for the whole machine with everything on it, which
        // only the machine's figures see.
        let read = self
            .proc_self_cgroup
            .as_deref()
            .and_then(|text| cgroup::read(text, &self.root))
            .filter(|cpu| cpu.limit_millicores.is_some());
        let (source, sample) = match read {
            Some(cpu) => {
                let capacity = cgroup::capacity_millicores(cpu.limit_millicores, self.cores);
                let now = Instant::now();
                let permille = match self.last.replace((cpu.usage_ns, now)) {
                    Some((usage, then)) => cgroup::use_permille(
                        cpu.usage_ns.saturating_sub(usage),
                        u64::try_from(now.duration_since(then).as_nanos()).unwrap_or(u64::MAX),
                        capacity,
                    ),
                    None => 0,
                };
                (cpu.source, (permille, capacity))
            }
            None => (
                CpuSource::Machine,
                (
                    self.machine.sample(),
                    cgroup::capacity_millicores(None, self.cores),
                ),
            ),
        };
        if self.source != Some(source) {
            tracing::info!(
                source = source.as_str(),
                capacity_millicores = sample.1,
                "CPU figures"
            );
            self.source = Some(source);
        }
        sample
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(proc_self_cgroup: Option<&str>, root: PathBuf, cores: u32) -> NodeCpu {
        NodeCpu {
            proc_self_cgroup: proc_self_cgroup.map(str::to_owned),
            root,
            cores,
            ..NodeCpu::new()
        }
    }

    #[test]
    fn a_quota_gives_the_capacity_and_no_quota_the_machine() {
        let root = std::env::temp_dir().join(format!("hearsay-nodecpu-{}", std::process::id()));
        let group = root.join("w");
        std::fs::create_dir_all(&group).unwrap();
        std::fs::write(group.join("cpu.stat"), "usage_usec 10\n").unwrap();
        std::fs::write(group.join("cpu.max"), "50000 100000\n").unwrap();
        let mut cpu = sampler(Some("0::/w\n"), root.clone(), 2);
        // The first sample has nothing to measure against.
        let first = CpuFigures {
            permille: 0,
            outside_permille: 0,
            capacity_millicores: 500,
        };
        assert_eq!(cpu.sample(), first);
        assert_eq!(cpu.source, Some(CpuSource::CgroupV2));
        // The group used a whole second of CPU since: more than its quota allows in the time,
        // so its use reads 1000.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(group.join("cpu.stat"), "usage_usec 1000010\n").unwrap();
        let second = cpu.sample();
        assert_eq!(second.permille, 1000);
        assert_eq!(second.capacity_millicores, 500);
        std::fs::write(group.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(cpu.sample().capacity_millicores, 2000);
        assert_eq!(cpu.source, Some(CpuSource::Machine));
        let mut none = sampler(None, root.clone(), 4);
        assert_eq!(none.sample().capacity_millicores, 4000);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
