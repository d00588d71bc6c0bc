//! What the simulators have to do, by instant of virtual time: a queue that gives the earliest
//! first, and things due at the same instant in the order they were queued, so that a run is the
//! same every time.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Things of type `T`, each due at an instant of virtual time.
#[derive(Debug)]
pub struct Timeline<T> {
    heap: BinaryHeap<Scheduled<T>>,
    queued: u64,
}

impl<T> Default for Timeline<T> {
    fn default() -> Self {
        Timeline {
            heap: BinaryHeap::new(),
            queued: 0,
        }
    }
}

impl<T> Timeline<T> {
    /// Queues `item`, due at `at`.
    pub fn push(&mut self, at: Duration, item: T) {
        self.queued += 1;
        self.heap.push(Scheduled {
            at,
            order: self.queued,
            item,
        });
    }

    /// When the earliest item is due, if any.
    pub fn next_at(&self) -> Option<Duration> {
        self.heap.peek().map(|s| s.at)
    }

    /// Takes the earliest item (of those due at the same instant, the first queued) and its
    /// instant.
    pub fn pop(&mut self) -> Option<(Duration, T)> {
        self.heap.pop().map(|s| (s.at, s.item))
    }

    /// How many items are queued.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[derive(Debug)]
struct Scheduled<T> {
    at: Duration,
    /// Order of queueing: breaks ties in time.
    order: u64,
    item: T,
}

// `BinaryHeap` is a max-heap: reverse the order so that the earliest entry comes out first.
impl<T> Ord for Scheduled<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}
impl<T> PartialOrd for Scheduled<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> PartialEq for Scheduled<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl<T> Eq for Scheduled<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_comes_first_and_ties_in_the_order_queued() {
        let mut t = Timeline::default();
        t.push(Duration::from_millis(5), "late");
        t.push(Duration::from_millis(1), "first");
        t.push(Duration::from_millis(1), "second");
        assert_eq!(t.next_at(), Some(Duration::from_millis(1)));
        let order: Vec<_> = std::iter::from_fn(|| t.pop().map(|(_, item)| item)).collect();
        assert_eq!(order, ["first", "second", "late"]);
        assert!(t.is_empty());
    }
}
