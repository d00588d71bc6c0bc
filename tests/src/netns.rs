//! Network namespaces for tests that really cut or degrade links: a fresh namespace has its own
//! loopback, so routing rules and packet filters inside it touch nothing of the host's. Needs
//! root and `ip` (iproute2); packet loss needs `nft` (nftables) too.
//!
//! The usual shape: the test (or tool) runs itself again inside the namespace with
//! [`run_inside`], and the inner run starts its workers there.

use std::path::Path;
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
