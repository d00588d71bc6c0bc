//! The HTTP API: the server, its routes and what guards them — the token, the checks that keep
//! web pages out, the per-client limits — and what the routes answer with: job, peer and node routes,
//! the cluster stream, the dashboard page, the JSON views.

pub mod auth;
pub mod browser_guard;
pub mod dashboard;
pub mod info;
pub mod job_routes;
pub mod limits;
pub mod node_routes;
pub mod peer_routes;
pub mod routes;
pub mod server;
pub mod stream;
pub mod view;
