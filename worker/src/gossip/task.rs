//! The gossip task: a tokio UDP socket and a timer driving the sans-IO [`Gossip`] core.
//!
//! The task waits for whichever comes first — a datagram, the core's next timeout, or the
//! shutdown signal — hands it to the core, then drains what the core wants sent and the
//! membership changes it noticed (each logged once, at info level). On shutdown it announces
//! at once that the node is leaving, so that peers stop sending it work, and keeps gossiping
//! (with the leaving state) while the node drains its jobs, and at least a short linger, so that
//! peers hear it from this node and from each other, before it returns.
//!
//! With a cluster key, the task seals every datagram the core wants sent, for the address it is
//! sent to, and opens every datagram received before the core sees it ([`Sealing`]): one that
//! fails (a forgery, another cluster, a replay, one sealed for another node, a plain datagram) is counted by reason in
//! [`SharedGossip::receive_errors`] and dropped, and never reaches the core. The core's budget is
//! the configured one less the seal's overhead, so sealed datagrams keep to the configured
//! budget. Without a key, sealed datagrams are counted (`sealed`) and dropped, and plain ones go
//! to the core as they are.
//!
//! [`Gossip`]: hearsay_shared::Gossip

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hearsay_shared::seal::Sealing;
use hearsay_shared::{LoadVector, Verdict, VerdictChange};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::notices::Notices;
use super::SharedGossip;
use crate::gossip::sampler::{Work, WorkGauge};
use crate::history::SharedHistory;
use crate::metrics::Metrics;

/// The longest a leaving node keeps gossiping: long enough for two rounds at the default
/// interval, short enough that stopping a node stays quick.
pub const MAX_LINGER: Duration = Duration::from_millis(500);

/// Room for the largest UDP payload; a datagram over a peer's budget is refused by the decoder.
const RECV_BUFFER: usize = 65_536;

/// The current time on tokio's clock, so that tests with paused time drive the core too.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The wall clock in ms since the UNIX epoch: what seals are stamped with and checked against.
/// (Not tokio's clock: peers compare stamps across machines.)
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How long a leaving node keeps gossiping: two rounds, at most [`MAX_LINGER`].
pub fn linger(interval: Duration) -> Duration {
    (interval * 2).min(MAX_LINGER)
}

/// Drives `gossip` over `socket`, sealing and opening datagrams as `sealing` says. When
/// `shutdown` is cancelled it announces the leave; it returns once the leave has been gossiped
/// for the linger and `drained` is cancelled too. Every round's report carries the queue as it is
/// then, this node's counts of jobs ended and the summary of its recent sojourns (from
/// `metrics`).
// Nine plain handles, each used once here; a struct holding them would only be unpacked again.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    socket: UdpSocket,
    gossip: SharedGossip,
    work: Arc<dyn WorkGauge>,
    mut rng: StdRng,
    mut sealing: Sealing,
    shutdown: CancellationToken,
    drained: CancellationToken,
    history: SharedHistory,
    metrics: Metrics,
) {
    // Nonces come from an rng of their own, seeded from the OS: never from `rng`, whose seed is
    // logged and may be given (`--seed`), so that two nodes started with the same seed would
    // repeat each other's nonces under the shared key.
    let mut seal_rng = StdRng::from_os_rng();
    let linger = linger(gossip.with(|g| g.config().interval));
    let mut buf = vec![0u8; RECV_BUFFER];
    // Set once the leave is announced: the task stops at this instant, or when the drain is
    // over if that is later.
    let mut leave_by: Option<Instant> = None;
    let mut drain_over = false;
    let mut notices = Notices::new();
    loop {
        if drain_over && leave_by.is_some_and(|until| now() >= until) {
            break;
        }
        let wake = gossip.with(|g| g.poll_timeout());
        // Wake for the end of the linger, unless it has passed (the drain is what is awaited).
        let wake = match leave_by {
            Some(until) if until > now() => wake.min(until),
            _ => wake,
        };
        tokio::select! {
            // Shutdown first, then the timer, then datagrams: a flood of datagrams must not
            // starve the rounds (which carry the heartbeat) or delay the leave.
            biased;
            () = shutdown.cancelled(), if leave_by.is_none() => {
                let now = now();
                gossip.with(|g| g.leave(now));
                leave_by = Some(now + linger);
                info!(
                    linger_ms = linger.as_millis() as u64,
                    "announced leaving; gossiping a little longer so that peers hear it"
                );
            }
            () = drained.cancelled(), if leave_by.is_some() && !drain_over => {
                drain_over = true;
            }
            () = tokio::time::sleep_until(wake.into()) => {
                let now = now();
                // The round's report carries the queue as it is now, not as the sampler last
                // saw it: with jobs of about one gossip interval, a sample half an interval old
                // is already wrong.
                let Work { queued, running } = work.work();
                gossip.with(|g| {
                    let load = g.own_report().load;
                    let ended = metrics.ended();
                    let sojourn = metrics.recent_sojourns(Instant::now());
                    g.set_load(LoadVector { queued, running, ended, sojourn, ..load });
                    g.handle_tick(now, &mut rng);
                });
                let seeds = gossip.with(|g| {
                    if g.has_live_peer() { None } else { Some(g.seeds().to_vec()) }
                });
                let line = notices.round(now, seeds.is_none(), seeds.as_deref().unwrap_or(&[]));
                if let Some(line) = line {
                    warn!("{line}");
                }
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => match sealing.incoming(&buf[..len], unix_ms()) {
                    Ok(datagram) => {
                        let now = now();
                        if let Err(e) = gossip.with(|g| g.handle_datagram(now, from, &datagram)) {
                            debug!(%from, len, error = %e, "dropped a datagram that does not decode");
                            if let Some(line) = notices.dropped(now, "decode", from) {
                                warn!(error = %e, "{line}");
                            }
                        }
                    }
                    Err(e) => {
                        gossip.receive_errors().count(&e);
                        debug!(%from, len, reason = e.reason(), error = %e, "dropped a gossip datagram");
                        if let Some(line) = notices.dropped(now(), e.reason(), from) {
                            warn!(error = %e, "{line}");
                        }
                    }
                },
                Err(e) => {
                    // Nothing to hand the core. Pause briefly so that an error that repeats
                    // (the socket is broken) cannot spin this loop.
                    warn!(error = %e, "gossip receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
        flush(&socket, &gossip, &sealing, &mut seal_rng, &history).await;
    }
    debug!("gossip task stopped");
}

/// Seals and sends what the core has queued, and logs the membership changes it noticed (and
/// puts them on the history's timeline). The lock is released before the first send.
async fn flush(
    socket: &UdpSocket,
    gossip: &SharedGossip,
    sealing: &Sealing,
    seal_rng: &mut StdRng,
    history: &SharedHistory,
) {
    let (transmits, changes) = gossip.with(|g| {
        let transmits: Vec<_> = std::iter::from_fn(|| g.poll_transmit()).collect();
        let changes: Vec<_> = std::iter::from_fn(|| g.poll_event()).collect();
        (transmits, changes)
    });
    for change in &changes {
        log_change(change);
    }
    history.verdicts_changed(&changes);
    for transmit in transmits {
        let bytes = match sealing.outgoing(transmit.bytes, transmit.to, unix_ms(), seal_rng) {
            Ok(bytes) => bytes,
            Err(e) => {
                // Only a datagram that is not the core's own could fail: never sent in the open.
                warn!(to = %transmit.to, error = %e, "cannot seal a gossip datagram; not sent");
                continue;
            }
        };
        // UDP is lossy anyway: a failed send is a lost datagram, which gossip repairs.
        if let Err(e) = socket.send_to(&bytes, transmit.to).await {
            debug!(to = %transmit.to, error = %e, "gossip send failed");
        }
    }
}

fn log_change(change: &VerdictChange) {
    let name = |v: Option<Verdict>| v.map_or("absent", Verdict::as_str);
    info!(
        node = %change.node,
        from = name(change.from),
        to = name(change.to),
        incarnation = change.incarnation,
        "membership changed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linger_is_two_rounds_but_bounded() {
        assert_eq!(
            linger(Duration::from_millis(100)),
            Duration::from_millis(200)
        );
        assert_eq!(
            linger(Duration::from_millis(200)),
            Duration::from_millis(400)
        );
        assert_eq!(linger(Duration::from_secs(5)), MAX_LINGER);
    }
}
