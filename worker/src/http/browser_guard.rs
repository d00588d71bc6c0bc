//! What keeps web pages out of the API. A browser lets any page send a "simple" request — a
//! `POST` of `text/plain`, a form, or no body type at all — to any address, `127.0.0.1:8080`
//! included, without asking first; and a DNS-rebinding page (a name of the attacker's that is
//! made to resolve to the node) can even read the answers, as the browser takes the node for the
//! page's own origin. Three checks, each a JSON error naming the header:
//!
//! - **`Host`** must name this node ([`HostNames`]), port ignored: a rebinding page's requests
//!   carry the page's own name, which is not one of the node's. The node's names: its API
//!   listen IP; `localhost` and every loopback IP when it listens on loopback; any IP literal
//!   when it listens on an unspecified address (`0.0.0.0`, `::`) — no page can make a browser
//!   send an IP literal for a name of its own, so an IP is never a rebound name; the machine's
//!   host name; and the names of `--allowed-hosts`. Else `421 unknown_host` (the request was
//!   meant for another server); no `Host`, two, or one that is not `host[:port]`: `400
//!   invalid_host`.
//! - **`Origin`**: a request that may change state (any method but `GET` and `HEAD`; `OPTIONS`
//!   too, as it is the preflight of one) whose `Origin` is not this node's own — not the host
//!   and port of its `Host` (`Host` without a port: the scheme's default) — is `403
//!   cross_origin`; `Origin: null` (a sandboxed frame, a file) too. A request without `Origin`
//!   (curl, the nodes, loadgen) is not a browser's cross-origin one and passes.
//! - **`Content-Type`** of every `POST` must be `application/json` (parameters allowed; a
//!   `charset` must be UTF-8), else `415 unsupported_media_type` with `Accept-Post`. A page
//!   can send `application/json` elsewhere only after a CORS preflight, and nothing in the API
//!   ever answers with an `Access-Control-Allow-*` header, so the browser never sends it.
//!
//! The port is ignored in `Host` because it adds nothing against rebinding (the page's URL can
//! carry the node's port) and proxies and port forwards change it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, HOST, ORIGIN};
use hyper::{Method, Request, StatusCode};

/// The names and addresses a request's `Host` may give for this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNames {
    /// The API's listen IP.
    listen: IpAddr,
    /// Lower-case names without a trailing dot: the host name, `--allowed-hosts`.
    names: Vec<String>,
    /// IP literals from `--allowed-hosts`.
    ips: Vec<IpAddr>,
}

impl HostNames {
    /// The names of a node whose API listens on `listen`, on a machine called `host_name`, with
    /// `allowed` (from `--allowed-hosts`) besides.
    pub fn new(listen: IpAddr, host_name: Option<&str>, allowed: &AllowedHosts) -> Self {
        let mut names = Vec::new();
        let mut ips = Vec::new();
        for entry in &allowed.0 {
            match entry.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => names.push(entry.clone()),
            }
        }
        if let Some(host) = host_name.map(normalise_name).filter(|h| !h.is_empty()) {
            names.push(host);
        }
        HostNames { listen, names, ips }
    }

    /// Whether `host`, the host part of a `Host` header (brackets of an IPv6 literal removed),
    /// names this node.
    pub fn admits(&self, host: &str) -> bool {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return ip == self.listen
                || self.listen.is_unspecified()
                || (self.listen.is_loopback() && ip.is_loopback())
                || self.ips.contains(&ip);
        }
        let name = normalise_name(host);
        (name == "localhost" && (self.listen.is_loopback() || self.listen.is_unspecified()))
            || self.names.contains(&name)
    }
}

/// Lower case, without the trailing dot of a fully qualified name.
fn normalise_name(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `--allowed-hosts`: DNS names (or IP literals) under which clients reach the node besides
/// its own ([`HostNames`]), comma-separated, without ports; empty items ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(pub Vec<String>);

impl FromStr for AllowedHosts {
    type Err = String;
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let mut hosts = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item.parse::<IpAddr>().is_ok() {
                hosts.push(item.to_owned());
                continue;
            }
            let name = normalise_name(item);
            let valid = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !valid {
                return Err(format!(
                    "{item:?} is not a host name (letters, digits, '-', '_' and dots; no port \
                     and no scheme: the port is not checked)"
                ));
            }
            hosts.push(name);
        }
        Ok(AllowedHosts(hosts))
    }
}

impl fmt::Display for AllowedHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// A request refused by one of the checks: its status, code, the header at fault and why.
/// Nothing was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `400`, `421`, `403` or `415`.
    pub status: StatusCode,
    /// `invalid_host`, `unknown_host`, `cross_origin` or `unsupported_media_type`.
    pub code: &'static str,
    /// `Host`, `Origin` or `Content-Type`.
    pub field: &'static str,
    /// Why, for a person.
    pub reason: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, field: &'static str, reason: String) -> Self {
        Refusal {
            status,
            code,
            field,
            reason,
        }
    }
}

/// A `Host` (or `:authority`) value split into its host (IPv6 brackets removed) and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Authority<'a> {
    host: &'a str,
    port: Option<u16>,
}

/// Splits `host[:port]`; `None` for anything else (user info, a path, an empty host, a bad
/// port).
fn authority(text: &str) -> Option<Authority<'_>> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (host, port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let name_chars = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    if host.is_empty() || (!text.starts_with('[') && !host.bytes().all(name_chars)) {
        return None;
    }
    let port = match port {
        None => None,
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some(port.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some(Authority { host, port })
}

/// The request's `Host`: the authority of its target when it has one (HTTP/2's `:authority`,
/// an absolute-form target), else its one `Host` header.
fn host_of<B>(req: &Request<B>) -> Result<String, Refusal> {
    let invalid =
        |reason: String| Refusal::new(StatusCode::BAD_REQUEST, "invalid_host", "Host", reason);
    if let Some(authority) = req.uri().authority() {
        return Ok(authority.as_str().to_owned());
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => Err(invalid(
            "is required (the name or address the client used to reach this node)".into(),
        )),
        (Some(_), Some(_)) => Err(invalid("is given more than once".into())),
        (Some(value), None) => value
            .to_str()
            .map(str::to_owned)
            .map_err(|_| invalid("is not visible ASCII".into())),
    }
}

/// The `Host` and `Origin` checks, which every request passes before anything else.
pub fn check_sender<B>(req: &Request<B>, names: &HostNames) -> Result<(), Refusal> {
    let host_text = host_of(req)?;
    let Some(host) = authority(&host_text) else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_host",
            "Host",
            format!("{host_text:?} is not host[:port]"),
        ));
    };
    if !names.admits(host.host) {
        return Err(Refusal::new(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown_host",
            "Host",
            format!(
                "{host_text:?} does not name this node: give its address or host name, or \
                 start it with --allowed-hosts listing the name"
            ),
        ));
    }
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(());
    }
    let mut origins = req.headers().get_all(ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (None, _) => Ok(()),
        (Some(origin), None) if is_same_origin(origin, host) => Ok(()),
        (Some(origin), _) => Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "Origin",
            format!(
                "{} is another origin than this node's (Host {host_text:?}); this API does \
                 not take requests from other sites' pages",
                String::from_utf8_lossy(origin.as_bytes())
            ),
        )),
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of a page this node served under
/// `host`: the same host, and the same port — `Host`'s, or the scheme's default when `Host`
/// gives none (behind a TLS proxy).
fn is_same_origin(origin: &HeaderValue, host: Authority<'_>) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.to_ascii_lowercase();
    let (default_port, rest) = if let Some(rest) = origin.strip_prefix("http://") {
        (80, rest)
    } else if let Some(rest) = origin.strip_prefix("https://") {
        (443, rest)
    } else {
        // `null` (a sandboxed frame, a file), or another scheme.
        return false;
    };
    let Some(theirs) = authority(rest) else {
        return false;
    };
    let port = theirs.port.unwrap_or(default_port);
    normalise_name(theirs.host) == normalise_name(host.host)
        && host.port.map_or(port == default_port, |ours| ours == port)
}

/// The `Content-Type` check of a `POST`: `application/json`, with parameters, a `charset` only
/// UTF-8.
pub fn check_json_body(headers: &HeaderMap) -> Result<(), Refusal> {
    let refuse = |reason: String| {
        Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type",
            reason,
        )
    };
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => {
            return Err(refuse(
                "is missing; a POST body must be application/json".into(),
            ))
        }
        (Some(_), Some(_)) => return Err(refuse("is given more than once".into())),
        (Some(value), None) => value,
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let mut parts = text.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(refuse(format!(
            "{text} is not accepted; a POST body must be application/json"
        )));
    }
    for parameter in parts.filter(|p| !p.is_empty()) {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset")
            && !(value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8"))
        {
            return Err(refuse(format!(
                "{text}: JSON is UTF-8; the charset cannot be {value:?}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(listen: &str, allowed: &str) -> HostNames {
        HostNames::new(
            listen.parse().unwrap(),
            Some("MyHost"),
            &allowed.parse().unwrap(),
        )
    }

    fn request(method: Method, headers: &[(&str, &str)]) -> Request<()> {
        let mut request = Request::builder().method(method).uri("/v1/jobs");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap()
    }

    fn sender(names: &HostNames, method: Method, headers: &[(&str, &str)]) -> Result<(), String> {
        check_sender(&request(method, headers), names).map_err(|r| r.code.to_owned())
    }

    #[test]
    fn a_loopback_node_answers_to_its_ip_loopback_localhost_and_its_host_name() {
        let node = names("127.0.0.1", "");
        for host in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "127.9.9.9:1",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST",
            "myhost:8080",
            "myhost.",
        ] {
            assert_eq!(
                sender(&node, Method::POST, &[("host", host)]),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "evil.example:8080",
            "evil.example",
            "10.0.0.1:8080",
            "localhost.evil.example",
            "myhost.evil.example",
        ] {
            assert_eq!(
                sender(&node, Method::POST, &[("host", host)]),
                Err("unknown_host".into()),
                "{host}"
            );
        }
    }

    #[test]
    fn a_node_on_an_unspecified_address_answers_to_any_ip_but_not_to_names() {
        let node = names("0.0.0.0", "");
        for host in ["192.0.2.7:80", "[2001:db8::1]:8080", "localhost", "myhost"] {
            assert_eq!(
                sender(&node, Method::GET, &[("host", host)]),
                Ok(()),
                "{host}"
            );
        }
        assert_eq!(
            sender(&node, Method::GET, &[("host", "rebound.example:8080")]),
            Err("unknown_host".into())
        );
    }

    #[test]
    fn a_node_on_one_address_answers_to_it_and_to_the_allowed_names_only() {
        let node = names("192.0.2.7", "Api.Example.com,node-1.internal.,198.51.100.1");
        for host in [
            "192.0.2.7:8080",
            "api.example.com:443",
            "API.EXAMPLE.COM",
            "node-1.internal",
            "198.51.100.1",
            "myhost",
        ] {
            assert_eq!(
                sender(&node, Method::GET, &[("host", host)]),
                Ok(()),
                "{host}"
            );
        }
        for host in ["127.0.0.1", "localhost", "192.0.2.8", "example.com"] {
            assert_eq!(
                sender(&node, Method::GET, &[("host", host)]),
                Err("unknown_host".into()),
                "{host}"
            );
        }
    }

    #[test]
    fn a_host_that_is_missing_doubled_or_malformed_is_invalid() {
        let node = names("127.0.0.1", "");
        assert_eq!(sender(&node, Method::GET, &[]), Err("invalid_host".into()));
        assert_eq!(
            sender(
                &node,
                Method::GET,
                &[("host", "127.0.0.1"), ("host", "evil.example")]
            ),
            Err("invalid_host".into())
        );
        for host in [
            "",
            "user@127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:99999",
            "127.0.0.1:80/x",
            "[::1",
            "[nope]:80",
            "a b",
        ] {
            assert_eq!(
                sender(&node, Method::GET, &[("host", host)]),
                Err("invalid_host".into()),
                "{host:?}"
            );
        }
        // HTTP/2's :authority (or an absolute-form target) is the Host.
        let absolute = Request::builder()
            .uri("http://evil.example:8080/v1/jobs")
            .header("host", "127.0.0.1")
            .body(())
            .unwrap();
        assert_eq!(
            check_sender(&absolute, &node).unwrap_err().code,
            "unknown_host"
        );
    }

    #[test]
    fn only_this_node_s_own_origin_may_change_state() {
        let node = names("127.0.0.1", "");
        let host = ("host", "127.0.0.1:8080");
        // The scheme is not compared: behind a TLS proxy the page is https.
        for origin in [
            "http://127.0.0.1:8080",
            "HTTP://127.0.0.1:8080",
            "https://127.0.0.1:8080",
        ] {
            assert_eq!(
                sender(&node, Method::POST, &[host, ("origin", origin)]),
                Ok(()),
                "{origin}"
            );
        }
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:8081",
            "http://localhost:8080",
            "http://127.0.0.1",
            "null",
            "file://",
        ] {
            for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
                assert_eq!(
                    sender(&node, method.clone(), &[host, ("origin", origin)]),
                    Err("cross_origin".into()),
                    "{method} from {origin}"
                );
            }
            // Reading is not refused for the Origin (the Host check covers rebinding).
            assert_eq!(
                sender(&node, Method::GET, &[host, ("origin", origin)]),
                Ok(())
            );
        }
        // Behind a TLS proxy: Host without a port, the page's origin on the default one.
        let proxied = ("host", "localhost");
        assert_eq!(
            sender(
                &node,
                Method::POST,
                &[proxied, ("origin", "https://localhost")]
            ),
            Ok(())
        );
        assert_eq!(
            sender(
                &node,
                Method::POST,
                &[proxied, ("origin", "http://localhost")]
            ),
            Ok(())
        );
        assert_eq!(
            sender(
                &node,
                Method::POST,
                &[proxied, ("origin", "https://localhost:8443")]
            ),
            Err("cross_origin".into())
        );
    }

    #[test]
    fn a_post_body_must_be_json() {
        let check = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            }
            check_json_body(&headers)
        };
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/json; foo=bar",
        ] {
            assert_eq!(check(&[ok]), Ok(()), "{ok}");
        }
        for bad in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json-seq",
            "application/vnd.api+json",
            "application/json; charset=latin1",
            "",
        ] {
            let refusal = check(&[bad]).unwrap_err();
            assert_eq!(refusal.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
            assert_eq!(refusal.field, "Content-Type");
            assert!(refusal.reason.contains(bad), "{bad}: {}", refusal.reason);
        }
        assert!(check(&[]).unwrap_err().reason.contains("missing"));
        assert!(check(&["application/json", "text/plain"]).is_err());
    }

    #[test]
    fn allowed_hosts_are_names_without_ports() {
        let hosts: AllowedHosts = " a.example , ,B.example.,10.1.2.3,::1".parse().unwrap();
        assert_eq!(hosts.0, ["a.example", "b.example", "10.1.2.3", "::1"]);
        for bad in [
            "a.example:8080",
            "http://a.example",
            "a..example",
            "a/b",
            "-:-",
        ] {
            let e = bad.parse::<AllowedHosts>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        assert_eq!(AllowedHosts::default().to_string(), "");
    }
}
