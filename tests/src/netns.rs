//! Network namespaces for tests that really cut or degrade links: a fresh namespace has its own
//! loopback, so routing rules and packet filters inside it touch nothing of the host's. Needs
//! root and `ip` (iproute2); packet loss needs `nft` (nftables) too.
//!
//! The usual shape: the test (or tool) runs itself again inside the namespace with
//! [`run_inside`], and the inner run starts its workers there.
//!
//! Hosts of their own: a [`Lan`] is a bridge in a namespace of its own with a namespace per host
//! plugged into it, each host with its own address ([`LanPlan::host_ip`]) and its own
//! `/etc/hosts` (`ip netns exec` bind-mounts `/etc/netns/NAME/hosts` over it). The test runs
//! itself again in the bridge's namespace, which reaches every host and nothing else, and starts
//! each worker in its host's namespace.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// A network namespace with its loopback up; on drop, what still runs in it is killed and it is
/// deleted.
#[derive(Debug)]
pub struct Namespace {
    /// Its name, for `ip netns exec`.
    pub name: String,
}

impl Namespace {
    /// Creates `<prefix>-<pid>` and brings its loopback up.
    pub fn create(prefix: &str) -> Result<Self> {
        let name = format!("{prefix}-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let namespace = Namespace { name };
        ip(&[
            "netns",
            "exec",
            &namespace.name,
            "ip",
            "link",
            "set",
            "lo",
            "up",
        ])?;
        Ok(namespace)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                Command::new("kill").args(["-9", pid]).status().ok();
            }
        }
        ip(&["netns", "del", &self.name]).ok();
    }
}

/// Runs `exe args` inside `namespace` with `env` set (the marker that tells the inner run where
/// it is), killing it if it has not ended within `limit`.
pub fn run_inside(
    namespace: &Namespace,
    exe: &Path,
    args: &[&str],
    env: (&str, &str),
    limit: Duration,
) -> Result<ExitStatus> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &namespace.name])
        .arg(exe)
        .args(args)
        .env(env.0, env.1)
        .spawn()
        .context("cannot run inside the namespace")?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            bail!(
                "the run inside {} did not end within {limit:?}",
                namespace.name
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Drops `permille` of the UDP datagrams arriving for `port`, at random, from inside the current
/// namespace (an nftables input rule, so the sender never knows: as on a real lossy network).
pub fn drop_udp(port: u16, permille: u32) -> Result<()> {
    run("nft", &["add", "table", "inet", "hearsay_loss"])?;
    run(
        "nft",
        &[
            "add",
            "chain",
            "inet",
            "hearsay_loss",
            "input",
            "{ type filter hook input priority 0; }",
        ],
    )?;
    let rule = format!("udp dport {port} numgen random mod 1000 < {permille} counter drop");
    let mut args = vec!["add", "rule", "inet", "hearsay_loss", "input"];
    args.extend(rule.split(' '));
    run("nft", &args)
}

/// How many datagrams the [`drop_udp`] rule has dropped so far.
pub fn dropped_udp() -> Result<u64> {
    let out = Command::new("nft")
        .args(["list", "chain", "inet", "hearsay_loss", "input"])
        .output()
        .context("cannot run nft")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let packets = text
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok());
    packets.context("no packet counter in the nft rule")
}

/// `ip args`, failing with its error output.
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

/// `program args`, failing with its error output.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The names and addresses of a [`Lan`], known to the run that creates it and, given the
/// creator's process id, to the run inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanPlan {
    /// The prefix of every namespace's name.
    pub prefix: String,
    /// How many hosts.
    pub hosts: usize,
    /// The process id of the run that creates the namespaces (their names end with it).
    pub pid: u32,
}

impl LanPlan {
    /// The bridge's own address in the LAN's namespace: where the test speaks from.
    pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);

    /// A plan for `hosts` hosts (at most 250), to be created by this process.
    pub fn new(prefix: &str, hosts: usize) -> Self {
        assert!((1..=250).contains(&hosts), "1 to 250 hosts");
        LanPlan {
            prefix: prefix.to_owned(),
            hosts,
            pid: std::process::id(),
        }
    }

    /// The namespace holding the bridge.
    pub fn lan_namespace(&self) -> String {
        format!("{}lan-{}", self.prefix, self.pid)
    }

    /// Host `i`'s namespace.
    pub fn host_namespace(&self, i: usize) -> String {
        format!("{}{i}-{}", self.prefix, self.pid)
    }

    /// Host `i`'s address: 10.77.0.(i+1), on a /24 that exists only inside these namespaces.
    pub fn host_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, u8::try_from(i + 1).expect("at most 250 hosts"))
    }

    /// Host `i`'s `/etc/hosts`, as `ip netns exec` mounts it.
    pub fn hosts_file(&self, i: usize) -> PathBuf {
        Path::new("/etc/netns")
            .join(self.host_namespace(i))
            .join("hosts")
    }

    /// Host `i`'s port on the bridge, in the LAN's namespace.
    fn port(i: usize) -> String {
        format!("host{i}")
    }

    /// Rewrites host `i`'s `/etc/hosts` in place (the mount is of the file, so it must keep its
    /// inode; the resolver reads it again at every lookup).
    pub fn set_hosts(&self, i: usize, text: &str) -> Result<()> {
        let path = self.hosts_file(i);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Takes host `i`'s link down (its bridge port: nothing reaches it or leaves it) or up.
    pub fn set_link(&self, i: usize, up: bool) -> Result<()> {
        let lan = self.lan_namespace();
        ip(&[
            "-n",
            &lan,
            "link",
            "set",
            &Self::port(i),
            if up { "up" } else { "down" },
        ])
    }
}

/// One host of a [`Lan`]: on drop, what runs in it is killed, its namespace deleted and its
/// `/etc/netns` folder removed.
#[derive(Debug)]
pub struct Host {
    /// Its namespace.
    pub namespace: Namespace,
    etc: PathBuf,
}

impl Drop for Host {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.etc).ok();
        // And `/etc/netns` itself once no host is left in it (fails, harmlessly, before).
        if let Some(parent) = self.etc.parent() {
            std::fs::remove_dir(parent).ok();
        }
        // `namespace` is dropped after this: its processes killed, itself deleted.
    }
}

/// Hosts on one bridge, each in a namespace of its own; everything is torn down on drop (the
/// hosts first, then the bridge's namespace), also when a test fails half-way.
#[derive(Debug)]
pub struct Lan {
    /// Its names and addresses.
    pub plan: LanPlan,
    /// The hosts (dropped before `namespace`: fields drop in order).
    pub hosts: Vec<Host>,
    /// The namespace holding the bridge.
    pub namespace: Namespace,
}

impl Lan {
    /// Creates the bridge (at [`LanPlan::BRIDGE_IP`]/24) and `plan.hosts` hosts plugged into
    /// it, host `i` at [`LanPlan::host_ip`]/24 on its `eth0`, with an `/etc/hosts` of
    /// `hosts(i)`. Needs root and `ip`; fails on the first step that fails, leaving nothing.
    pub fn create(plan: LanPlan, hosts: impl Fn(usize) -> String) -> Result<Lan> {
        assert_eq!(
            plan.pid,
            std::process::id(),
            "the plan is for another process"
        );
        let namespace = Namespace::create(&format!("{}lan", plan.prefix))?;
        let lan = namespace.name.clone();
        ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"])?;
        let bridge_ip = format!("{}/24", LanPlan::BRIDGE_IP);
        ip(&["-n", &lan, "addr", "add", &bridge_ip, "dev", "br0"])?;
        ip(&["-n", &lan, "link", "set", "br0", "up"])?;
        let mut made = Lan {
            plan,
            hosts: Vec::new(),
            namespace,
        };
        for i in 0..made.plan.hosts {
            let host = Namespace::create(&format!("{}{i}", made.plan.prefix))?;
            let etc = Path::new("/etc/netns").join(&host.name);
            let host = Host {
                namespace: host,
                etc: etc.clone(),
            };
            let name = host.namespace.name.clone();
            made.hosts.push(host);
            std::fs::create_dir_all(&etc)
                .with_context(|| format!("cannot create {}", etc.display()))?;
            made.plan.set_hosts(i, &hosts(i))?;
            let port = LanPlan::port(i);
            ip(&[
                "link", "add", &port, "netns", &lan, "type", "veth", "peer", "name", "eth0",
                "netns", &name,
            ])?;
            ip(&["-n", &lan, "link", "set", &port, "master", "br0", "up"])?;
            let host_ip = format!("{}/24", made.plan.host_ip(i));
            ip(&["-n", &name, "addr", "add", &host_ip, "dev", "eth0"])?;
            ip(&["-n", &name, "link", "set", "eth0", "up"])?;
        }
        Ok(made)
    }
}
