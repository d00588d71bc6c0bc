//! Requests that wait for a job's end, counted per client IP address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The default of `--max-waits-per-client`.
pub const DEFAULT_MAX_WAITS_PER_CLIENT: usize = 256;
/// What a client refused for too many waits is told to wait, in seconds.
pub const WAIT_RETRY_AFTER_SECS: &str = "1";

/// Open waits per client IP, at most `limit` each. Cloning shares the counts.
#[derive(Debug, Clone)]
pub struct WaitLimiter {
    limit: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open wait of one client; given back on drop.
#[derive(Debug)]
pub struct WaitPermit {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// The client has `limit` waits open already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{ip} has {limit} requests waiting for jobs already (--max-waits-per-client {limit}); retry when one has ended")]
pub struct TooManyWaits {
    /// The client.
    pub ip: IpAddr,
    /// The limit.
    pub limit: usize,
}

impl WaitLimiter {
    /// At most `limit` open waits per client.
    pub fn new(limit: usize) -> Self {
        WaitLimiter {
            limit,
            open: Arc::default(),
        }
    }

    /// Takes a wait for client `ip`, if it has fewer than the limit open.
    pub fn acquire(&self, ip: IpAddr) -> Result<WaitPermit, TooManyWaits> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.limit {
            if *count == 0 {
                open.remove(&ip);
            }
            return Err(TooManyWaits {
                ip,
                limit: self.limit,
            });
        }
        *count += 1;
        Ok(WaitPermit {
            ip,
            open: self.open.clone(),
        })
    }

    /// The waits open now for `ip`.
    #[cfg(test)]
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&ip).copied().unwrap_or(0)
    }

    /// The number of clients with a wait open: the map holds no entry for the others, so
    /// its size follows the clients waiting now, not every client ever seen.
    #[cfg(test)]
    pub fn clients(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for WaitPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_counted_per_client_and_given_back_on_drop() {
        let limiter = WaitLimiter::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = limiter.acquire(a).unwrap();
        let second = limiter.acquire(a).unwrap();
        assert_eq!(
            limiter.acquire(a).unwrap_err(),
            TooManyWaits { ip: a, limit: 2 }
        );
        let other = limiter
            .acquire(b)
            .expect("another client has its own count");
        assert_eq!(limiter.open(a), 2);
        drop(first);
        assert_eq!(limiter.open(a), 1);
        let third = limiter.acquire(a).expect("released by the drop");
        drop((second, third, other));
        assert_eq!(limiter.open(a), 0);
        assert_eq!(limiter.clients(), 0, "no entry is kept for idle clients");
    }

    #[test]
    fn a_zero_limit_refuses_every_wait_and_keeps_nothing() {
        let limiter = WaitLimiter::new(0);
        let a: IpAddr = "::1".parse().unwrap();
        assert!(limiter.acquire(a).is_err());
        assert_eq!(limiter.clients(), 0);
    }
}
