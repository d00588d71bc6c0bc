//! Limits on what one HTTP client can hold:
//!
//! - requests that wait for a job's end (`POST /v1/jobs?wait=true` and the long poll
//!   `GET /v1/jobs/{id}?wait=true`), counted per client IP address ([`WaitLimiter`]). A wait
//!   holds a connection and a task for up to an hour (the longest job); without a bound one
//!   client could pin them by the thousand. A [`WaitPermit`] is taken before the wait and given
//!   back when it is dropped: when the answer is sent, and also when the client disconnects
//!   (hyper drops the request's future then).
//! - open connections, per client IP and in all ([`ConnectionLimiter`]), the total kept below
//!   the process's file-descriptor limit ([`ConnectionLimits::from_descriptors`]), so that a
//!   crowd of idle connections is refused with `503` instead of making `accept` fail for
//!   everyone;
//! - request bodies: a whole body within a bound and, after a grace, at a minimum rate
//!   ([`TimedBody`]), so that a body that stops arriving does not hold its connection forever.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

mod body;
mod connections;
mod waits;

pub use body::*;
pub use connections::*;
pub use waits::*;

/// The address of the client of a request, put in its extensions by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl ClientAddr {
    /// The address to count a request under: the client's IP, or `0.0.0.0` for a request that
    /// did not come through the server (in-process tests).
    pub fn ip_of<B>(req: &hyper::Request<B>) -> IpAddr {
        req.extensions()
            .get::<ClientAddr>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
    }
}
