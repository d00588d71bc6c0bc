//! What CPU a node may use and how much of it it uses, read from its own cgroup.
//!
//! In a container, the machine's CPU figures are the host's, not the worker's share of it: a
//! worker limited to half a CPU on a 16-core host would report 16 cores and a few per cent. So a
//! worker reads its cgroup when it runs in one that it can see:
//! - cgroup v2: `/proc/self/cgroup` names the group (`0::/path`); `cpu.stat` holds its use
//!   (`usage_usec`) and `cpu.max` its limit (`quota period`, or `max period` for none), on the
//!   group and on each of its ancestors (the tightest binds).
//! - cgroup v1: `/proc/self/cgroup` names a path per hierarchy (`4:cpu,cpuacct:/path`);
//!   `cpuacct.usage` (nanoseconds) holds the use, `cpu.cfs_quota_us` (-1 for none) over
//!   `cpu.cfs_period_us` the limit.
//!
//! Else (no cgroup file readable) the worker measures the machine, as before. The parsing
//! functions take file contents, so that both versions are tested with sample texts; [`read`]
//! takes the root of the cgroup file system (`/sys/fs/cgroup`), so that it is tested against a
//! temporary directory laid out like it. No function here keeps a clock: use is a counter, and
//! the caller divides its growth by the time between two reads ([`use_permille`]).

use std::path::{Path, PathBuf};

/// Where a node's CPU figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSource {
    /// Its cgroup v2 group.
    CgroupV2,
    /// Its cgroup v1 `cpu`/`cpuacct` hierarchies.
    CgroupV1,
    /// The whole machine.
    Machine,
}

impl CpuSource {
    /// A short name: `cgroup-v2`, `cgroup-v1`, `machine`.
    pub fn as_str(self) -> &'static str {
        match self {
            CpuSource::CgroupV2 => "cgroup-v2",
            CpuSource::CgroupV1 => "cgroup-v1",
            CpuSource::Machine => "machine",
        }
    }
}

/// One reading of a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupCpu {
    /// Which version was read.
    pub source: CpuSource,
    /// CPU time used by the group so far, in nanoseconds (a counter).
    pub usage_ns: u64,
    /// The group's CPU limit in millicores (quota over period), or `None` when no quota applies.
    pub limit_millicores: Option<u32>,
}

/// The group path of cgroup v2 in `/proc/self/cgroup` text: the line `0::/path`.
pub fn v2_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::trim)
}

/// The controllers (as listed, e.g. `cpu,cpuacct`) and group path of the cgroup v1 hierarchy that
/// has `controller`, in `/proc/self/cgroup` text (`4:cpu,cpuacct:/path`).
pub fn v1_path<'a>(proc_self_cgroup: &'a str, controller: &str) -> Option<(&'a str, &'a str)> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| (controllers, path.trim()))
    })
}

/// `usage_usec` of a cgroup v2 `cpu.stat`, in microseconds.
pub fn parse_cpu_stat_usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == "usage_usec")
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// A cgroup v2 `cpu.max` (`quota period`, or `max period`) as a limit in millicores: `Some(None)`
/// for no limit, `None` for text that is not a `cpu.max`.
pub fn parse_cpu_max(cpu_max: &str) -> Option<Option<u32>> {
    let mut words = cpu_max.split_whitespace();
    let quota = words.next()?;
    let period: u64 = words.next().map_or(Some(100_000), |p| p.parse().ok())?;
    if quota == "max" {
        return Some(None);
    }
    millicores(quota.parse().ok()?, period).map(Some)
}

/// A cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` as a limit in millicores: `Some(None)`
/// for no limit (quota -1), `None` for text that is not a number.
pub fn parse_cfs(quota_us: &str, period_us: &str) -> Option<Option<u32>> {
    let quota: i64 = quota_us.trim().parse().ok()?;
    let period: u64 = period_us.trim().parse().ok()?;
    if quota < 0 {
        return Some(None);
    }
    millicores(quota.unsigned_abs(), period).map(Some)
}

/// A cgroup v1 `cpuacct.usage`, in nanoseconds.
pub fn parse_cpuacct_usage(usage: &str) -> Option<u64> {
    usage.trim().parse().ok()
}

/// `quota / period` in millicores, at least 1 (a quota never stops a group entirely); `None` for
/// a period of 0.
fn millicores(quota_us: u64, period_us: u64) -> Option<u32> {
    if period_us == 0 {
        return None;
    }
    let m = (u128::from(quota_us) * 1000 / u128::from(period_us)).max(1);
    Some(u32::try_from(m).unwrap_or(u32::MAX))
}

/// The CPU a node may use, in millicores: its limit, if any, and never more than its cores.
pub fn capacity_millicores(limit: Option<u32>, cores: u32) -> u32 {
    let machine = cores.max(1).saturating_mul(1000);
    limit.map_or(machine, |l| l.min(machine))
}

/// CPU use between two readings as per mille of `capacity_millicores`, clamped to 0..=1000:
/// `used_ns` CPU time used in `elapsed_ns` of wall time.
pub fn use_permille(used_ns: u64, elapsed_ns: u64, capacity_millicores: u32) -> u16 {
    if elapsed_ns == 0 || capacity_millicores == 0 {
        return 0;
    }
    // used / (elapsed x capacity / 1000) x 1000.
    let p = u128::from(used_ns) * 1_000_000
        / (u128::from(elapsed_ns) * u128::from(capacity_millicores));
    // Clamped to 1000, so the cast cannot truncate.
    p.min(1000) as u16
}

/// `root` joined with a group path (which starts with `/`).
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Reads the node's cgroup, given the text of `/proc/self/cgroup` and the root of the cgroup file
/// system: v2 if the text names a v2 group whose `cpu.stat` is readable, else v1 if its
/// `cpuacct` hierarchy is, else `None` (measure the machine). A group path that is not found
/// under the root (a container with its own cgroup namespace shows `/`, or the host's path when
/// it has none) is looked for at the hierarchy's root too.
pub fn read(proc_self_cgroup: &str, root: &Path) -> Option<CgroupCpu> {
    read_v2(proc_self_cgroup, root).or_else(|| read_v1(proc_self_cgroup, root))
}

fn read_file(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_v2(proc_self_cgroup: &str, root: &Path) -> Option<CgroupCpu> {
    let path = v2_path(proc_self_cgroup)?;
    let group = [under(root, path), root.to_path_buf()]
        .into_iter()
        .find(|g| g.join("cpu.stat").is_file())?;
    let usage_us = parse_cpu_stat_usage_usec(&read_file(&group.join("cpu.stat"))?)?;
    // The tightest limit of the group and its ancestors up to the root.
    let mut limit: Option<u32> = None;
    let mut dir = Some(group.as_path());
    while let Some(d) = dir {
        if let Some(Some(l)) = read_file(&d.join("cpu.max")).and_then(|t| parse_cpu_max(&t)) {
            limit = Some(limit.map_or(l, |m| m.min(l)));
        }
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Some(CgroupCpu {
        source: CpuSource::CgroupV2,
        usage_ns: usage_us.saturating_mul(1000),
        limit_millicores: limit,
    })
}

/// The directory of a v1 hierarchy's group: the hierarchy is mounted under its controllers'
/// names (`cpu,cpuacct`) or one of them (`cpuacct`, often a link).
fn v1_group(
    root: &Path,
    controllers: &str,
    controller: &str,
    path: &str,
    file: &str,
) -> Option<PathBuf> {
    [controllers, controller]
        .into_iter()
        .flat_map(|mount| [under(&root.join(mount), path), root.join(mount)])
        .find(|g| g.join(file).is_file())
}

fn read_v1(proc_self_cgroup: &str, root: &Path) -> Option<CgroupCpu> {
    let (controllers, path) = v1_path(proc_self_cgroup, "cpuacct")?;
    let acct = v1_group(root, controllers, "cpuacct", path, "cpuacct.usage")?;
    let usage_ns = parse_cpuacct_usage(&read_file(&acct.join("cpuacct.usage"))?)?;
    let limit = v1_path(proc_self_cgroup, "cpu")
        .and_then(|(controllers, path)| {
            v1_group(root, controllers, "cpu", path, "cpu.cfs_quota_us")
        })
        .and_then(|g| {
            parse_cfs(
                &read_file(&g.join("cpu.cfs_quota_us"))?,
                &read_file(&g.join("cpu.cfs_period_us"))?,
            )
        })
        .flatten();
    Some(CgroupCpu {
        source: CpuSource::CgroupV1,
        usage_ns,
        limit_millicores: limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_PROC: &str = "0::/system.slice/hearsay.service\n";
    const V1_PROC: &str = "12:memory:/docker/abc\n\
        4:cpu,cpuacct:/docker/abc\n\
        1:name=systemd:/docker/abc\n";
    const CPU_STAT: &str = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n\
        nr_periods 10\nnr_throttled 2\nthrottled_usec 5000\n";

    #[test]
    fn proc_self_cgroup_names_the_group_of_each_version() {
        assert_eq!(v2_path(V2_PROC), Some("/system.slice/hearsay.service"));
        assert_eq!(v2_path(V1_PROC), None);
        assert_eq!(
            v1_path(V1_PROC, "cpuacct"),
            Some(("cpu,cpuacct", "/docker/abc"))
        );
        assert_eq!(
            v1_path(V1_PROC, "cpu"),
            Some(("cpu,cpuacct", "/docker/abc"))
        );
        assert_eq!(v1_path(V2_PROC, "cpu"), None);
        // A hybrid system lists both; v2 is looked for first by `read`.
        assert_eq!(v2_path("4:cpu,cpuacct:/a\n0::/b\n"), Some("/b"));
    }

    #[test]
    fn v2_files_parse() {
        assert_eq!(parse_cpu_stat_usage_usec(CPU_STAT), Some(123_456));
        assert_eq!(parse_cpu_stat_usage_usec("user_usec 5\n"), None);
        assert_eq!(parse_cpu_max("50000 100000\n"), Some(Some(500)));
        assert_eq!(parse_cpu_max("150000 100000"), Some(Some(1500)));
        assert_eq!(parse_cpu_max("max 100000\n"), Some(None));
        assert_eq!(parse_cpu_max("1 100000"), Some(Some(1)));
        assert_eq!(parse_cpu_max("50000 0"), None);
        assert_eq!(parse_cpu_max("lots 100000"), None);
        assert_eq!(parse_cpu_max(""), None);
    }

    #[test]
    fn v1_files_parse() {
        assert_eq!(parse_cpuacct_usage("987654321\n"), Some(987_654_321));
        assert_eq!(parse_cpuacct_usage("x"), None);
        assert_eq!(parse_cfs("50000\n", "100000\n"), Some(Some(500)));
        assert_eq!(parse_cfs("-1\n", "100000\n"), Some(None));
        assert_eq!(parse_cfs("200000", "100000"), Some(Some(2000)));
        assert_eq!(parse_cfs("", "100000"), None);
    }

    #[test]
    fn capacity_is_the_limit_within_the_cores() {
        assert_eq!(capacity_millicores(Some(500), 2), 500);
        assert_eq!(capacity_millicores(Some(8000), 2), 2000);
        assert_eq!(capacity_millicores(None, 2), 2000);
        assert_eq!(capacity_millicores(None, 0), 1000);
    }

    #[test]
    fn use_is_per_mille_of_capacity() {
        // Half a CPU used for a second, of a capacity of half a CPU: saturated.
        assert_eq!(use_permille(500_000_000, 1_000_000_000, 500), 1000);
        // A quarter of a CPU of two cores: 125 per mille.
        assert_eq!(use_permille(250_000_000, 1_000_000_000, 2000), 125);
        assert_eq!(use_permille(5_000_000_000, 1_000_000_000, 1000), 1000);
        assert_eq!(use_permille(1, 0, 1000), 0);
        assert_eq!(use_permille(1, 1, 0), 0);
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn temp_root(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hearsay-cgroup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_a_v2_tree_with_the_tightest_limit_of_the_ancestors() {
        let root = temp_root("v2");
        write(&root, "cpu.stat", "usage_usec 1\n");
        write(&root, "system.slice/cpu.max", "150000 100000\n");
        write(&root, "system.slice/hearsay.service/cpu.stat", CPU_STAT);
        write(
            &root,
            "system.slice/hearsay.service/cpu.max",
            "max 100000\n",
        );
        let cpu = read(V2_PROC, &root).unwrap();
        assert_eq!(
            cpu,
            CgroupCpu {
                source: CpuSource::CgroupV2,
                usage_ns: 123_456_000,
                limit_millicores: Some(1500),
            }
        );
        // A container in its own namespace sees its group as the root.
        let inner = read("0::/\n", &root.join("system.slice/hearsay.service")).unwrap();
        assert_eq!(inner.limit_millicores, None);
        assert_eq!(inner.usage_ns, 123_456_000);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn reads_a_v1_tree_and_falls_back_to_nothing() {
        let root = temp_root("v1");
        write(&root, "cpu,cpuacct/docker/abc/cpuacct.usage", "42000\n");
        write(&root, "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "50000\n");
        write(
            &root,
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us",
            "100000\n",
        );
        assert_eq!(
            read(V1_PROC, &root),
            Some(CgroupCpu {
                source: CpuSource::CgroupV1,
                usage_ns: 42_000,
                limit_millicores: Some(500),
            })
        );
        // Separate mounts, no quota.
        let split = temp_root("v1-split");
        write(&split, "cpuacct/g/cpuacct.usage", "7\n");
        write(&split, "cpu/g/cpu.cfs_quota_us", "-1\n");
        write(&split, "cpu/g/cpu.cfs_period_us", "100000\n");
        let cpu = read("3:cpuacct:/g\n2:cpu:/g\n", &split).unwrap();
        assert_eq!((cpu.usage_ns, cpu.limit_millicores), (7, None));
        // Named in /proc/self/cgroup but nothing readable: measure the machine.
        assert_eq!(read(V2_PROC, &split), None);
        assert_eq!(read("", &root), None);
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&split).unwrap();
    }
}
