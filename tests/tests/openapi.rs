//! The OpenAPI document (`docs/openapi.json`) against the server: a real worker serves it at
//! `GET /v1/openapi.json` byte for byte; its operations are exactly the routes of
//! `hearsay_worker::ROUTES`, and each listed route answers (no `not_found`, no `405`) while
//! an unlisted path is `404` and an unlisted method `405`; the error codes it lists are exactly
//! those the worker's source produces. Then `tests/scripts/openapi-check.sh` (the validator and
//! schemathesis against a live worker): mandatory with `HEARSAY_REQUIRE_OPENAPI=1`, else run
//! when `python3 -m venv` works, else skipped with a message.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hearsay_tests::cluster::{wait_until, WorkerProcess, WorkerSpec};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn document() -> (String, Value) {
    let text = std::fs::read_to_string(root().join("docs/openapi.json")).unwrap();
    let value = serde_json::from_str(&text).expect("docs/openapi.json is JSON");
    (text, value)
}

/// An answer's headers, lower-case names.
type Headers = Vec<(String, String)>;

/// One HTTP/1.1 exchange, `Connection: close`: the status, the headers (lower-case names) and
/// as much of the body as comes within the read timeout (the stream never ends).
fn exchange(
    api: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, Headers, String)> {
    let mut stream = TcpStream::connect_timeout(&api, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let content = if method == "POST" {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\n{content}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                // The stream never ends, nor pauses for the read timeout: its head is enough.
                let text = String::from_utf8_lossy(&bytes);
                if text.split_once("\r\n\r\n").is_some_and(|(head, _)| {
                    head.to_ascii_lowercase().contains("text/event-stream")
                }) {
                    break;
                }
            }
            Err(_) if !bytes.is_empty() => break, // the stream: its head is enough
            Err(e) => return Err(e).context(format!("{method} {path}")),
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{method} {path}: no status in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, rest.to_owned()))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn start() -> Result<WorkerProcess> {
    let node = WorkerProcess::start(WorkerSpec::new("openapi", vec![]))?;
    let api = node.spec.api();
    wait_until(Duration::from_secs(10), || {
        Ok(exchange(api, "GET", "/healthz", "").is_ok_and(|(s, _, _)| s == 200))
    })?;
    Ok(node)
}

/// `(method, path)` of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    ops
}

fn routes() -> BTreeSet<(String, String)> {
    hearsay_worker::ROUTES
        .iter()
        .flat_map(|(methods, path)| {
            methods
                .split(", ")
                .map(move |m| (m.to_owned(), (*path).to_owned()))
        })
        .collect()
}

#[test]
fn the_served_document_is_docs_openapi_json_and_lists_every_route() -> Result<()> {
    let node = start()?;
    let api = node.spec.api();
    let (text, doc) = document();
    let (status, headers, body) = exchange(api, "GET", "/v1/openapi.json", "")?;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert!(
        body == text,
        "GET /v1/openapi.json is not docs/openapi.json"
    );

    assert_eq!(
        operations(&doc),
        routes(),
        "the document's operations and ROUTES"
    );

    // Every listed route answers; every other method on it is 405 with its Allow.
    for (methods, path) in hearsay_worker::ROUTES {
        let concrete = path.replace("{id}", "0000000000000001");
        for method in methods.split(", ") {
            // A drain would make the node leave, and the checks after it need the node: that
            // it is served is the 405 below (a known path) and tests/tests/cancel.rs.
            if (method, *path) == ("POST", "/v1/drain") {
                continue;
            }
            let body = if method == "POST" { "{}" } else { "" };
            let (status, _, body) = exchange(api, method, &concrete, body)?;
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                !body.contains(r#""code":"not_found""#),
                "{method} {path} is not served: {status} {body}"
            );
        }
        let other = if methods.contains("DELETE") {
            "PUT"
        } else if methods.contains("GET") {
            "DELETE"
        } else {
            "GET"
        };
        let (status, headers, _) = exchange(api, other, &concrete, "")?;
        assert_eq!(status, 405, "{other} {path}");
        assert_eq!(header(&headers, "allow"), Some(*methods), "{path}");
    }
    for unlisted in [
        "/v1",
        "/v1/jobs/0000000000000001/x",
        "/v1/peer/x",
        "/openapi.json",
    ] {
        let (status, _, body) = exchange(api, "GET", unlisted, "")?;
        assert_eq!(status, 404, "{unlisted}");
        assert!(body.contains(r#""code":"not_found""#), "{unlisted}: {body}");
    }
    Ok(())
}

/// The error codes the worker's source can answer with: the string literal that is the code
/// argument of every `ErrorBody::new`, `ApiError::new`/`field`/`unavailable` and
/// browser_guard's `Refusal::new`, and the codes `let code = match` picks.
fn codes_in_source() -> BTreeSet<String> {
    let mut files = Vec::new();
    let mut dirs = vec![root().join("worker/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut codes = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        // The unit tests' own bodies are not answers.
        let source = source.split("#[cfg(test)]\nmod tests").next().unwrap();
        let flat: String = source.split_whitespace().collect::<Vec<_>>().join(" ");
        for call in [
            "ErrorBody::new(",
            "ApiError::new(",
            "ApiError::field(",
            "ApiError::unavailable(",
            "Refusal::new(",
            "unavailable(",
        ] {
            for (at, _) in flat.match_indices(call) {
                let mut rest = flat[at + call.len()..].trim_start();
                if let Some(after) = rest.strip_prefix("StatusCode::") {
                    let Some((_, after)) = after.split_once(',') else {
                        continue;
                    };
                    rest = after.trim_start();
                }
                if let Some(literal) = rest.strip_prefix('"') {
                    let code = literal.split('"').next().unwrap();
                    if !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    {
                        codes.insert(code.to_owned());
                    }
                }
            }
        }
        for (at, _) in flat.match_indices("let code = match") {
            let block = flat[at..].split("};").next().unwrap();
            for arm in block.split("=> \"").skip(1) {
                codes.insert(arm.split('"').next().unwrap().to_owned());
            }
        }
    }
    codes
}

#[test]
fn every_error_code_the_worker_produces_is_in_the_document() {
    let (_, doc) = document();
    let listed: BTreeSet<String> = doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]
        ["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let found = codes_in_source();
    assert!(
        found.len() > 20,
        "the source scan found too few codes: {found:?}"
    );
    assert_eq!(listed, found, "the document's error codes and the worker's");
}

#[test]
fn the_document_validates_and_holds_against_a_live_worker() -> Result<()> {
    let required = std::env::var("HEARSAY_REQUIRE_OPENAPI").is_ok_and(|v| v == "1");
    let venv = std::process::Command::new("python3")
        .args(["-m", "venv", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !venv {
        if required {
            bail!("HEARSAY_REQUIRE_OPENAPI=1 but `python3 -m venv` does not work");
        }
        eprintln!("skipped: no `python3 -m venv` (install python3-venv to run the OpenAPI check)");
        return Ok(());
    }
    let mut command = std::process::Command::new(root().join("tests/scripts/openapi-check.sh"));
    if let Ok(bin) = hearsay_tests::cluster::worker_bin() {
        command.env("HEARSAY_WORKER_BIN", bin);
    }
    let status = command.status().context("cannot run openapi-check.sh")?;
    if !status.success() {
        bail!("tests/scripts/openapi-check.sh failed: {status}");
    }
    Ok(())
}
