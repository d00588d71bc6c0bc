//! What the hand-off core counted of jobs moved between nodes — steals asked, granted and
//! empty, jobs moved out and in — for `GET /metrics` (read at scrape time) and
//! `GET /v1/cluster` (its `moves`).

use std::fmt;
use std::sync::Arc;

use hearsay_scheduler::handoff::HandoffStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use serde::Serialize;

/// Reads the core's counters now.
pub type StatsSource = Arc<dyn Fn() -> HandoffStats + Send + Sync>;

/// The moves of jobs between nodes, as `GET /v1/cluster` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MovesView {
    /// Steal requests this node sent (it was idle).
    pub steals_asked: u64,
    /// Of those, answered with a job.
    pub steals_granted: u64,
    /// Of those, answered with none.
    pub steals_empty: u64,
    /// Of those asked, sent at once to another peer after an empty answer.
    pub steals_again: u64,
    /// Empty answers whose victim's report was merged into the map as news.
    pub steal_news: u64,
    /// Queued jobs this node gave to a thief.
    pub stolen_out: u64,
    /// Queued jobs this node offered on as it left.
    pub handed_over: u64,
    /// Steal and hand-over offers this node was made (taken or not).
    pub moved_in_offers: u64,
    /// Jobs submitted here that a peer took.
    pub forwarded: u64,
    /// Offers whose answer was lost (the job was then asked after).
    pub offers_unanswered: u64,
    /// Ids fenced off here.
    pub fenced: u64,
}

impl From<HandoffStats> for MovesView {
    fn from(s: HandoffStats) -> Self {
        MovesView {
            steals_asked: s.steals_asked,
            steals_granted: s.steals_granted,
            steals_empty: s.steals_empty,
            steals_again: s.steals_again,
            steal_news: s.steal_news,
            stolen_out: s.stolen_out,
            handed_over: s.handed_over,
            moved_in_offers: s.stolen_in,
            forwarded: s.forwarded,
            offers_unanswered: s.offers_unanswered,
            fenced: s.fenced,
        }
    }
}

/// The collector of [`MovesView`]'s counters.
pub struct MoveCounters(pub StatsSource);

impl fmt::Debug for MoveCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MoveCounters").finish_non_exhaustive()
    }
}

impl Collector for MoveCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let m = MovesView::from((self.0)());
        let counters: [(&str, &str, u64); 9] = [
            (
                "steals_asked",
                "Steal requests this node sent while idle.",
                m.steals_asked,
            ),
            (
                "steals_granted",
                "Steal requests answered with a job.",
                m.steals_granted,
            ),
            (
                "steals_empty",
                "Steal requests answered with none.",
                m.steals_empty,
            ),
            (
                "steals_again",
                "Steal requests sent at once to another peer after an empty answer.",
                m.steals_again,
            ),
            (
                "steal_news",
                "Victims' reports from empty steal answers, merged into the load map.",
                m.steal_news,
            ),
            (
                "jobs_stolen_out",
                "Queued jobs this node gave to an idle peer.",
                m.stolen_out,
            ),
            (
                "jobs_handed_over",
                "Queued jobs this node offered on as it left.",
                m.handed_over,
            ),
            (
                "jobs_moved_in_offers",
                "Steal and hand-over offers this node was made (taken or not).",
                m.moved_in_offers,
            ),
            (
                "job_ids_fenced",
                "Job ids fenced off here by an ask.",
                m.fenced,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}
