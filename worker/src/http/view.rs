//! The JSON the HTTP API answers with: the cluster as this node sees it, and errors. (A job's
//! outcome is [`hearsay_shared::JobOutcome`]; the answer to a submission is
//! [`crate::jobs::dispatch::Accepted`].)
//!
//! These are views, built from the core under its lock and serialised after it is released;
//! field names are part of the API (`GET /v1/cluster`, `GET /v1/cluster/stream`), so change them
//! only with the README.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use hearsay_scheduler::Policy;
use hearsay_shared::{Gossip, GossipStats, LoadVector, NodeId, Verdict};
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::gossip::sealing::{socket_counters, ReceiveErrorCounts};
use crate::gossip::SharedGossip;
use crate::metrics::PlacementCounts;

/// One event of `GET /v1/cluster/stream`: the `GET /v1/cluster` view, with what this node has
/// placed so far and the clock to turn those counts into rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterEvent {
    /// The same fields as `GET /v1/cluster`, at the top level.
    #[serde(flatten)]
    pub cluster: ClusterView,
    /// Milliseconds since this node started (a monotonic clock: rates are differences of
    /// counts over differences of this).
    pub uptime_ms: u64,
    /// The gossip interval, in milliseconds: how often events come.
    pub interval_ms: u64,
    /// How this node places the jobs submitted to it.
    pub policy: Policy,
    /// Jobs this node has placed since it started: run here, or taken by each peer.
    pub placements: PlacementCounts,
}

/// `GET /v1/cluster`: this node and every node in its load map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterView {
    /// This node.
    pub node: NodeId,
    /// This node's current incarnation.
    pub incarnation: u64,
    /// Every node in the map, this one included, ordered by id.
    pub nodes: Vec<NodeView>,
    /// What the gossip core has done so far.
    pub gossip: StatsView,
    /// Jobs moved between nodes, as this node's hand-off counted them (absent where no
    /// hand-off runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moves: Option<crate::metrics::MovesView>,
}

/// One node as this node sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    /// The node's id.
    pub id: NodeId,
    /// Where its HTTP API listens.
    pub api: SocketAddr,
    /// Where its gossip socket listens.
    pub gossip: SocketAddr,
    /// Its incarnation, as last heard.
    pub incarnation: u64,
    /// Its report's sequence number, as last heard.
    pub seq: u64,
    /// This node's verdict: `alive`, `suspect`, `dead` or `left`.
    pub state: Verdict,
    /// The load it last reported (for this node: its load now).
    pub load: LoadVector,
    /// Milliseconds since a newer report of it arrived here; 0 for this node.
    pub age_ms: u64,
    /// How many times its verdict has changed since it entered the map.
    pub state_changes: u64,
    /// The failure detector's suspicion level, for peers being judged (alive or suspect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phi: Option<f64>,
}

/// The gossip core's counters, with the number of rounds run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsView {
    /// Gossip rounds run.
    pub rounds: u64,
    /// The core's counters, as fields of this object; `datagrams_received` counts every
    /// datagram the gossip socket received, those the seal refused included (see
    /// [`socket_counters`]).
    #[serde(flatten)]
    pub counters: GossipStats,
    /// Received datagrams dropped, by reason (as `gossip_receive_errors_total{reason}`): `decode`
    /// (the same as `decode_errors`) and those the seal refused before the core saw them.
    pub receive_errors: ReceiveErrorCounts,
}

impl ClusterView {
    /// The view of `gossip` at `now`.
    pub fn of(gossip: &Gossip, now: Instant) -> Self {
        let me = gossip.node();
        let detector = &gossip.config().detector;
        let nodes = gossip
            .map()
            .iter()
            .map(|entry| {
                if entry.report().node == *me {
                    // This node's own load is exact, not a report: show it as it is now.
                    let own = gossip.own_report();
                    return NodeView {
                        id: own.node,
                        api: own.api,
                        gossip: own.gossip,
                        incarnation: own.incarnation,
                        seq: own.seq,
                        state: entry.verdict(),
                        load: own.load,
                        age_ms: 0,
                        state_changes: entry.state_changes(),
                        phi: None,
                    };
                }
                let report = entry.report();
                let judged = matches!(entry.verdict(), Verdict::Alive | Verdict::Suspect);
                NodeView {
                    id: report.node.clone(),
                    api: report.api,
                    gossip: report.gossip,
                    incarnation: report.incarnation,
                    seq: report.seq,
                    state: entry.verdict(),
                    load: report.load,
                    age_ms: u64::try_from(entry.age(now).as_millis()).unwrap_or(u64::MAX),
                    state_changes: entry.state_changes(),
                    phi: judged.then(|| round_phi(entry.phi(now, detector))),
                }
            })
            .collect();
        ClusterView {
            node: me.clone(),
            incarnation: gossip.incarnation(),
            nodes,
            gossip: StatsView {
                rounds: gossip.round(),
                counters: gossip.stats(),
                receive_errors: ReceiveErrorCounts {
                    decode: gossip.stats().decode_errors,
                    ..ReceiveErrorCounts::default()
                },
            },
            moves: None,
        }
    }

    /// The view of a shared core at `now`, with the datagrams its gossip task dropped before
    /// they reached the core.
    pub fn of_shared(gossip: &SharedGossip, now: Instant) -> Self {
        let mut view = gossip.with(|g| ClusterView::of(g, now));
        view.gossip.receive_errors =
            ReceiveErrorCounts::of(&view.gossip.counters, gossip.receive_errors());
        view.gossip.counters = socket_counters(view.gossip.counters, gossip.receive_errors());
        view
    }
}

/// Three decimals are plenty to read; a phi so large that rounding overflows is left as it is
/// (JSON has no infinity, and serde_json would write `null`).
fn round_phi(phi: f64) -> f64 {
    let rounded = (phi * 1000.0).round() / 1000.0;
    if rounded.is_finite() {
        rounded
    } else {
        phi
    }
}

/// The body of every error answer: `{"error": {"code": "...", "message": "..."}}`, with a
/// `"field"` beside them when one field of the request is at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `not_found`.
    pub code: &'static str,
    /// A sentence for a person.
    pub message: String,
    /// The field at fault: a JSON field of the job (`body` for the document as a whole), a
    /// query parameter, a header, or `id` for the job id in the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    /// An error with this code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                field: None,
            },
        }
    }

    /// The same error, naming the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.error.field = Some(field.into());
        self
    }
}

/// A JSON answer.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let (status, bytes) = match serde_json::to_vec(body) {
        Ok(bytes) => (status, bytes),
        // Our views always serialise; should one ever fail, say so in the same error shape.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::to_vec(&ErrorBody::new("internal", e.to_string())).unwrap_or_default(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hearsay_shared::{wire, GossipConfig, LoadReport, NodeState};
    use serde_json::json;

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cluster_view_has_the_documented_shape() {
        let t0 = Instant::now();
        let me = NodeId::new("me-1").unwrap();
        let config = GossipConfig::new(me, addr("127.0.0.1:8001"), addr("127.0.0.1:7001"));
        let mut gossip = Gossip::new(config, 42, LoadVector::idle(4), vec![], t0).unwrap();
        let peer = LoadReport {
            node: NodeId::new("peer-2").unwrap(),
            incarnation: 9,
            seq: 3,
            load: LoadVector {
                cpu_permille: 250,
                cpu_capacity_millicores: 500,
                queued: 1,
                running: 2,
                slots: 2,
                state: NodeState::Alive,
                commands: 0,
                ended: Default::default(),
                sojourn: Default::default(),
                cpu_outside_permille: 0,
            },
            api: addr("127.0.0.1:8002"),
            gossip: addr("127.0.0.1:7002"),
        };
        let (datagram, _) = wire::encode_push(&peer, [], 1400).unwrap();
        gossip.handle_datagram(t0, peer.gossip, &datagram).unwrap();

        let view = ClusterView::of(&gossip, t0 + Duration::from_millis(150));
        let mut value = serde_json::to_value(&view).unwrap();
        // phi depends on the detector's arithmetic; check it is there, then compare the rest.
        let phi = value["nodes"][1]
            .as_object_mut()
            .unwrap()
            .remove("phi")
            .unwrap();
        assert!(phi.as_f64().unwrap() >= 0.0);
        assert_eq!(
            value,
            json!({
                "node": "me-1",
                "incarnation": 42,
                "nodes": [
                    {
                        "id": "me-1", "api": "127.0.0.1:8001", "gossip": "127.0.0.1:7001",
                        "incarnation": 42, "seq": 1, "state": "alive",
                        "load": {"cpu_permille": 0, "cpu_capacity_millicores": 0, "queued": 0, "running": 0, "slots": 4,
                                 "state": "alive", "commands": "0000000000000000",
                                 "ended": {"completed": 0, "failed": 0, "lost": 0},
                                 "sojourn": {"jobs": 0, "p50_ms": 0, "p99_ms": 0},
                                 "cpu_outside_permille": 0},
                        "age_ms": 0, "state_changes": 0
                    },
                    {
                        "id": "peer-2", "api": "127.0.0.1:8002", "gossip": "127.0.0.1:7002",
                        "incarnation": 9, "seq": 3, "state": "alive",
                        "load": {"cpu_permille": 250, "cpu_capacity_millicores": 500, "queued": 1, "running": 2, "slots": 2,
                                 "state": "alive", "commands": "0000000000000000",
                                 "ended": {"completed": 0, "failed": 0, "lost": 0},
                                 "sojourn": {"jobs": 0, "p50_ms": 0, "p99_ms": 0},
                                 "cpu_outside_permille": 0},
                        "age_ms": 150, "state_changes": 0
                    }
                ],
                "gossip": {
                    "rounds": 0, "datagrams_sent": 0, "bytes_sent": 0,
                    "datagrams_received": 1, "bytes_received": datagram.len(),
                    "decode_errors": 0, "reports_merged": 1, "refutations": 0,
                    "encode_errors": 0, "suspicions": 0, "deaths": 0, "suspect_probes": 0,
                    "suspicions_refuted": 0, "map_evictions": 0, "map_refusals": 0,
                    "implausible_reports": 0,
                    "receive_errors": {"decode": 0, "authentication": 0, "unknown_key": 0,
                                       "replay": 0, "unsealed": 0, "sealed": 0, "malformed": 0}
                }
            })
        );
    }

    #[test]
    fn datagrams_received_counts_those_the_seal_refused() {
        let t0 = Instant::now();
        let me = NodeId::new("me-1").unwrap();
        let config = GossipConfig::new(me, addr("127.0.0.1:8001"), addr("127.0.0.1:7001"));
        let gossip = Gossip::new(config, 42, LoadVector::idle(4), vec![], t0).unwrap();
        let shared = SharedGossip::new(gossip);
        shared
            .with(|g| g.handle_datagram(t0, addr("127.0.0.1:7002"), b"junk"))
            .unwrap_err();
        shared
            .receive_errors()
            .count(&hearsay_shared::seal::OpenError::Unsealed);
        shared
            .receive_errors()
            .count(&hearsay_shared::seal::OpenError::Malformed);
        let view = ClusterView::of_shared(&shared, t0);
        assert_eq!(view.gossip.counters.datagrams_received, 3);
        assert_eq!(view.gossip.receive_errors.decode, 1);
        assert_eq!(view.gossip.receive_errors.unsealed, 1);
        assert_eq!(view.gossip.receive_errors.malformed, 1);
    }

    #[test]
    fn a_phi_too_large_to_round_is_kept() {
        assert_eq!(round_phi(1.23456), 1.235);
        assert_eq!(round_phi(f64::MAX), f64::MAX);
    }

    #[test]
    fn error_body_shape() {
        let body = serde_json::to_value(ErrorBody::new("not_found", "no such path")).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": "not_found", "message": "no such path"}})
        );
        let body = ErrorBody::new("invalid_job", "ms: is required").with_field("ms");
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            json!({"error": {"code": "invalid_job", "message": "ms: is required", "field": "ms"}})
        );
    }
}
