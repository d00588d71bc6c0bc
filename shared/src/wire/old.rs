//! The formats before [`FORMAT_VERSION`](super::FORMAT_VERSION), read only: the messages as they were, generic over
//! the load vector, which is all that changed between versions.

use serde::Deserialize;

use super::{DigestEntry, Items};
use crate::{JobTally, NodeId, NodeState, SojournSummary};

/// Version 1: before `cpu_capacity_millicores` (read as 0, unknown) and `ended`.
#[derive(Deserialize)]
pub(super) struct LoadVectorV1 {
    cpu_permille: u16,
    queued: u32,
    running: u32,
    slots: u32,
    state: NodeState,
    commands: u64,
}

/// Version 4: before `cpu_outside_permille` (read as 0, no competition seen). As with
/// version 3, the older vector followed by the added field is what a version-4 build wrote.
#[derive(Deserialize)]
pub(super) struct LoadVectorV4 {
    up_to_v3: LoadVectorV3,
    sojourn: SojournSummary,
}

/// Version 3: before `sojourn` (read as no recent jobs). Postcard writes a struct's fields
/// one after the other with nothing around them, so version 2's vector followed by `ended`
/// reads exactly what a version-3 build wrote.
#[derive(Deserialize)]
pub(super) struct LoadVectorV3 {
    up_to_v2: LoadVectorV2,
    ended: JobTally,
}

/// Version 2: before `ended` (read as no jobs ended).
#[derive(Deserialize)]
pub(super) struct LoadVectorV2 {
    cpu_permille: u16,
    cpu_capacity_millicores: u32,
    queued: u32,
    running: u32,
    slots: u32,
    state: NodeState,
    commands: u64,
}

impl From<LoadVectorV1> for crate::LoadVector {
    fn from(l: LoadVectorV1) -> Self {
        LoadVectorV2 {
            cpu_permille: l.cpu_permille,
            cpu_capacity_millicores: 0,
            queued: l.queued,
            running: l.running,
            slots: l.slots,
            state: l.state,
            commands: l.commands,
        }
        .into()
    }
}

impl From<LoadVectorV2> for crate::LoadVector {
    fn from(l: LoadVectorV2) -> Self {
        LoadVectorV3 {
            up_to_v2: l,
            ended: JobTally::default(),
        }
        .into()
    }
}

impl From<LoadVectorV3> for crate::LoadVector {
    fn from(l: LoadVectorV3) -> Self {
        LoadVectorV4 {
            up_to_v3: l,
            sojourn: SojournSummary::default(),
        }
        .into()
    }
}

impl From<LoadVectorV4> for crate::LoadVector {
    fn from(l: LoadVectorV4) -> Self {
        let v3 = l.up_to_v3;
        let v2 = v3.up_to_v2;
        crate::LoadVector {
            cpu_permille: v2.cpu_permille,
            cpu_capacity_millicores: v2.cpu_capacity_millicores,
            queued: v2.queued,
            running: v2.running,
            slots: v2.slots,
            state: v2.state,
            commands: v2.commands,
            ended: v3.ended,
            sojourn: l.sojourn,
            cpu_outside_permille: 0,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct LoadReport<L> {
    node: NodeId,
    incarnation: u64,
    seq: u64,
    load: L,
    api: std::net::SocketAddr,
    gossip: std::net::SocketAddr,
}

#[derive(Deserialize)]
pub(super) enum Message<L> {
    Push {
        reports: Items<LoadReport<L>>,
    },
    Digest {
        sender: LoadReport<L>,
        reply: bool,
        entries: Items<DigestEntry>,
    },
}

impl<L: Into<crate::LoadVector>> From<LoadReport<L>> for crate::LoadReport {
    fn from(r: LoadReport<L>) -> Self {
        crate::LoadReport {
            node: r.node,
            incarnation: r.incarnation,
            seq: r.seq,
            load: r.load.into(),
            api: r.api,
            gossip: r.gossip,
        }
    }
}

impl<L: Into<crate::LoadVector>> From<Message<L>> for super::Message {
    fn from(m: Message<L>) -> Self {
        match m {
            Message::Push { reports } => super::Message::Push {
                reports: Items(reports.0.into_iter().map(Into::into).collect()),
            },
            Message::Digest {
                sender,
                reply,
                entries,
            } => super::Message::Digest {
                sender: sender.into(),
                reply,
                entries,
            },
        }
    }
}
