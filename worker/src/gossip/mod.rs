//! The gossip shell: the shared [`Gossip`] core and the tasks around it — the UDP socket and
//! timer that drive it, the cluster key, the load sampler, and seeds found again by DNS.

use std::sync::{Arc, Mutex, PoisonError};

use hearsay_shared::Gossip;

mod cgroup;
pub mod discovery;
mod notices;
pub mod sampler;
pub mod sealing;
pub mod task;

/// The gossip core, shared by the gossip task, the sampler and the HTTP handlers.
///
/// The core is only reached through [`SharedGossip::with`], whose closure is synchronous: the
/// lock can never be held across an `.await`, and every holder keeps it for microseconds. A
/// plain mutex is enough at this scale (a few hundred operations per second); an actor with a
/// channel would add a hop to every HTTP read for no gain.
#[derive(Debug, Clone)]
pub struct SharedGossip(Arc<Mutex<Gossip>>, Arc<sealing::ReceiveErrors>);

impl SharedGossip {
    /// Wraps a core.
    pub fn new(gossip: Gossip) -> Self {
        SharedGossip(Arc::new(Mutex::new(gossip)), Arc::default())
    }

    /// The datagrams the gossip task dropped before they reached the core (sealing).
    pub fn receive_errors(&self) -> &sealing::ReceiveErrors {
        &self.1
    }

    /// Runs `f` with the core locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut Gossip) -> R) -> R {
        // A panic while holding the lock cannot leave the core half-updated in a way that
        // matters more than stopping the node would: keep going with what is there.
        let mut gossip = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut gossip)
    }
}
