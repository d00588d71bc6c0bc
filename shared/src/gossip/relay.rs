//! What a node sends: the reports a push relays (most newsworthy first), digests of its map,
//! and the answers to a digest.

use std::collections::HashMap;
use std::net::SocketAddr;

use rand::seq::SliceRandom;
use rand::Rng;

use super::{Gossip, Transmit};
use crate::map::{Entry, News, Verdict};
use crate::wire::{self, DigestEntry, DigestEntryRef, EncodeError};
use crate::{LoadReport, NodeId, Version};

impl Gossip {
    /// Reports worth relaying, most newsworthy first: fewest pushes so far, then newest here.
    /// Dead nodes' reports are never relayed: they are stale by definition.
    pub(super) fn relay_candidates(&self) -> Vec<LoadReport> {
        let mut candidates: Vec<&Entry> = self
            .peers()
            .filter(|e| e.verdict() != Verdict::Dead && e.transmits < self.config.retransmits)
            .collect();
        // Membership changes first, then load changes, then bare heartbeats (the budget is a
        // few reports a push, and at a thousand nodes heartbeats alone would fill it). Ties go
        // to the smaller node id, so the order is total and a partial sort (only the few that
        // are taken need ordering) picks the same reports as a full one.
        let order = |a: &&Entry, b: &&Entry| {
            a.news
                .cmp(&b.news)
                .then(a.transmits.cmp(&b.transmits))
                .then(b.refreshed().cmp(&a.refreshed()))
                .then_with(|| a.report().node.cmp(&b.report().node))
        };
        let take = self.config.relay_per_push.min(candidates.len());
        if take < candidates.len() {
            candidates.select_nth_unstable_by(take, order);
            candidates.truncate(take);
        }
        candidates.sort_unstable_by(order);
        candidates.into_iter().map(|e| e.report().clone()).collect()
    }

    pub(super) fn send_push(&mut self, to: SocketAddr, own: &LoadReport, relay: &[LoadReport]) {
        match wire::encode_push(own, relay, self.config.budget) {
            Ok((bytes, carried)) => {
                for report in &relay[..carried] {
                    if let Some(entry) = self.map.get_mut(&report.node) {
                        entry.transmits += 1;
                        if entry.transmits >= self.config.retransmits {
                            entry.news = News::Heartbeat;
                        }
                    }
                }
                self.queue(to, bytes);
            }
            Err(e) => self.encode_failed(e),
        }
    }

    /// Sends a digest of the map to `to`: every node's version, from a random starting point,
    /// as many as fit.
    pub(super) fn send_digest<R: Rng + ?Sized>(&mut self, to: SocketAddr, rng: &mut R) {
        let own = self.own_report();
        let encoded = {
            let mut entries: Vec<DigestEntryRef<'_>> = self
                .peers()
                .map(|e| DigestEntryRef {
                    node: &e.report().node,
                    version: e.report().version(),
                })
                .collect();
            entries.shuffle(rng);
            wire::encode_digest_ref(&own, false, entries, self.config.budget)
        };
        match encoded {
            Ok((bytes, _)) => self.queue(to, bytes),
            Err(e) => self.encode_failed(e),
        }
    }

    /// Answers a digest from `from`: pushes what this node holds newer than the digest lists
    /// (and, for a first digest, what it does not list), and asks with a reply digest for what
    /// the peer holds newer.
    pub(super) fn answer_digest(&mut self, from: SocketAddr, reply: bool, entries: &[DigestEntry]) {
        let own = self.own_report();
        let budget = self.config.budget;
        let mut datagrams = Vec::new();
        let mut failed = None;
        {
            let listed: HashMap<&NodeId, Version> =
                entries.iter().map(|e| (&e.node, e.version)).collect();
            // What the peer lacks: reports newer than its versions first, then (for a first
            // digest, which lists the peer's whole map as far as it fits) nodes it did not list.
            let mut newer: Vec<&LoadReport> = Vec::new();
            let mut unlisted: Vec<&Entry> = Vec::new();
            for entry in self.peers().filter(|e| e.verdict() != Verdict::Dead) {
                let report = entry.report();
                match listed.get(&report.node) {
                    Some(v) if report.version() > *v => newer.push(report),
                    None if !reply => unlisted.push(entry),
                    _ => {}
                }
            }
            unlisted.sort_by_key(|e| std::cmp::Reverse(e.refreshed()));
            newer.extend(unlisted.into_iter().map(Entry::report));
            let mut rest = &newer[..];
            for _ in 0..self.config.max_answer_datagrams {
                match wire::encode_push(&own, rest.iter().copied(), budget) {
                    Ok((bytes, carried)) => {
                        datagrams.push(bytes);
                        rest = &rest[carried..];
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                if rest.is_empty() {
                    break;
                }
            }
            if !reply {
                // Ask for what the peer holds newer than this node does, or that it lacks.
                let wanted: Vec<DigestEntryRef<'_>> = entries
                    .iter()
                    .filter(|e| e.node != self.config.node)
                    .filter_map(|e| {
                        let mine = self.map.get(&e.node).map(|m| m.report().version());
                        match mine {
                            Some(mine) if e.version <= mine => None,
                            _ => Some(DigestEntryRef {
                                node: &e.node,
                                version: mine.unwrap_or(Version {
                                    incarnation: 0,
                                    seq: 0,
                                }),
                            }),
                        }
                    })
                    .collect();
                if !wanted.is_empty() && failed.is_none() {
                    match wire::encode_digest_ref(&own, true, wanted, budget) {
                        Ok((bytes, _)) => datagrams.push(bytes),
                        Err(e) => failed = Some(e),
                    }
                }
            }
        }
        for bytes in datagrams {
            self.queue(from, bytes);
        }
        if let Some(e) = failed {
            self.encode_failed(e);
        }
    }

    fn queue(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.outbox.push_back(Transmit { to, bytes });
    }

    fn encode_failed(&mut self, _error: EncodeError) {
        // The budget is validated against the largest possible own report, so this cannot
        // happen with a valid configuration; count it (`encode_errors`) rather than crash a
        // node, in debug builds too.
        self.stats.encode_errors += 1;
    }
}
