//! `GET /`: the dashboard, one HTML page with its CSS and JavaScript inline, compiled into the
//! binary (`static/dashboard.html`). It loads nothing from anywhere else — its
//! `Content-Security-Policy` says so — and follows `GET /v1/cluster/stream` with an
//! `EventSource`, which reconnects by itself.
//!
//! The page holds no data, so it is served without the API token. On a node started with
//! `--api-token-file`, open it as `/#token=<token>`, or type the token into the field the page
//! shows beside its `unauthorized` badge: the page keeps the token for the tab
//! (`sessionStorage`), takes it out of the address bar, and reads the stream with `fetch` and
//! `Authorization: Bearer` (an `EventSource` cannot send a header). The fragment never reaches
//! the server or its logs.
//!
//! The charts and the event timeline come from `GET /v1/history` (read in full on load, then
//! followed every 2 s), so a reload loses nothing; the page itself keeps only each node's last
//! 60 reports, for the sparklines and the jobs-per-second figures, which it takes from the
//! counts of jobs ended that every node gossips. It writes what it shows into `data-`
//! attributes too (on each row `data-node`, `data-state`, `data-queued`, `data-running`,
//! `data-queued-history`; on each chart's canvas `data-points`; on `<html>` `data-viewer`,
//! `data-nodes`, `data-events`, `data-connected`, `data-throughput`, `data-history-samples`,
//! `data-alone`, `data-dropping-now`, `data-token-field`), so that a test can read the rendered
//! page.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;

/// The page.
pub const PAGE: &str = include_str!("../../static/dashboard.html");

/// What the page may load: only from this node, and its own inline script and style.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The answer to `GET /`.
pub(crate) fn page() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The page is part of the binary: a restarted node of another version serves another one.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.starts_with("<!doctype html>"));
        assert!(PAGE.contains("new EventSource(\"/v1/cluster/stream\")"));
        // Nothing from a CDN or any other host.
        for needle in [
            "http://",
            "https://",
            "//cdn",
            "<script src",
            "<link rel=\"stylesheet\"",
        ] {
            assert!(!PAGE.contains(needle), "the page refers to {needle}");
        }
        let response = page();
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'"));
    }
}
