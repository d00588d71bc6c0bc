//! The dashboard in a real browser: headless Chromium (Debian's `chromium` package) loads `GET /`
//! from one node of a three-node cluster started in-process, shows all three nodes, follows a
//! change of queue depth after jobs are submitted — live, without reloading — and is
//! photographed.
//!
//! The test drives Chromium over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
//! JSON messages ending in a NUL byte, on the browser's fds 3 and 4), so that it can wait for
//! what the page shows instead of sleeping, and read what the page rendered into its `data-`
//! attributes.
//!
//! - Where Chromium is not installed the test says so and passes, unless
//!   `HEARSAY_REQUIRE_BROWSER=1` (as in CI), which makes that a failure. `HEARSAY_CHROMIUM`
//!   names the browser binary instead of a search of the `PATH` (a name that is not a file
//!   counts as no browser).
//! - The screenshot goes to `target/tmp/dashboard.png`; with `HEARSAY_UPDATE_SCREENSHOT=1` also
//!   to `docs/dashboard.png`, the picture the README shows.
//! - Chromium runs in a process group of its own, killed whole at the end, pass or fail; the
//!   nodes stop with the test's runtime. Every wait is bounded.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{cluster_gossiping_every, http, leave_all, submit, PATIENCE};
use serde_json::{json, Value};

/// Names tried for the browser, in order, when `HEARSAY_CHROMIUM` is not set.
const BROWSERS: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

fn find_browser() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HEARSAY_CHROMIUM") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    BROWSERS.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A headless Chromium driven over the DevTools pipe, killed (with everything it started) when
/// dropped.
struct Browser {
    child: Child,
    commands: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
    profile: PathBuf,
    stderr_log: PathBuf,
}

impl Browser {
    fn launch(binary: &Path) -> Browser {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let profile =
            std::env::temp_dir().join(format!("hearsay-chromium-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&profile).expect("create the browser profile directory");
        let stderr_log = profile.with_extension("log");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--mute-audio",
            "--window-size=1280,800",
            "--remote-debugging-pipe",
        ];
        // The pipe protocol wants the commands on fd 3 and the answers on fd 4: `sh` puts the
        // ends of our stdin and stdout pipes there (no unsafe code needed), and `setsid` gives
        // the browser a process group of its own, so that all its processes die together.
        let script = r#"exec setsid "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(binary)
            .args(args)
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_log).expect("create the browser log"))
            .spawn()
            .expect("start chromium");
        let commands = child.stdin.take().unwrap();
        let mut answers = child.stdout.take().unwrap();
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut chunk = [0u8; 65536];
            while let Ok(n) = answers.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&chunk[..n]);
                while let Some(end) = pending.iter().position(|&b| b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(value) = serde_json::from_slice(&message[..end]) {
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            commands,
            messages,
            next_id: 1,
            profile,
            stderr_log,
        }
    }

    /// Sends a command (to the page's session if given) and returns its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        if let Err(e) = self.commands.write_all(&bytes) {
            panic!("cannot send {method} to chromium: {e}{}", self.log_tail());
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(answer) if answer["id"] == id => {
                    if let Some(error) = answer.get("error") {
                        panic!("{method} failed: {error}");
                    }
                    return answer["result"].clone();
                }
                Ok(_event) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no answer to {method} in time{}", self.log_tail())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("chromium went away during {method}{}", self.log_tail())
                }
            }
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("; chromium's last words:\n{}", tail.join("\n"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask nicely (without waiting for an answer), then make sure: the whole group goes.
        let close = br#"{"id":999999,"method":"Browser.close"}"#;
        let _ = self.commands.write_all(close);
        let _ = self.commands.write_all(&[0]);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_file(&self.stderr_log);
    }
}

/// A page opened in the browser.
struct Page {
    session: String,
}

impl Page {
    fn open(browser: &mut Browser, url: &str) -> Page {
        let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let page = Page {
            session: attached["sessionId"]
                .as_str()
                .expect("a session")
                .to_owned(),
        };
        browser.call(
            Some(&page.session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser.call(Some(&page.session), "Page.navigate", json!({"url": url}));
        page
    }

    /// Evaluates `expression` in the page; returns its value (JSON).
    fn eval(&self, browser: &mut Browser, expression: &str) -> Value {
        let answer = browser.call(
            Some(&self.session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        answer["result"]["value"].clone()
    }

    /// What the dashboard shows now, from its data attributes and text.
    fn shown(&self, browser: &mut Browser) -> Shown {
        const READ: &str = r##"(() => {
            const root = document.documentElement.dataset;
            return {
                viewer: root.viewer || null,
                connected: root.connected === "true",
                badge: root.badge || null,
                events: Number(root.events || 0),
                marker: window.hearsayTestMarker || null,
                steals_asked: root.stealsAsked === undefined ? null : Number(root.stealsAsked),
                moved_out: root.movedOut === undefined ? null : Number(root.movedOut),
                rows: Array.from(document.querySelectorAll("#rows tr")).map((tr) => ({
                    id: tr.dataset.node,
                    state: tr.dataset.state,
                    queued: Number(tr.dataset.queued),
                    history: (tr.dataset.queuedHistory || "").split(",").filter((s) => s).map(Number),
                    text: tr.innerText,
                })),
            };
        })()"##;
        serde_json::from_value(self.eval(browser, READ)).unwrap_or_default()
    }

    /// Polls the page until `check` holds, or fails after [`PATIENCE`] with what it showed.
    fn wait_for(&self, browser: &mut Browser, what: &str, check: impl Fn(&Shown) -> bool) -> Shown {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let shown = self.shown(browser);
            if check(&shown) {
                return shown;
            }
            assert!(
                Instant::now() < deadline,
                "the dashboard did not show {what}; it showed {shown:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, browser: &mut Browser) -> Vec<u8> {
        let shot = browser.call(
            Some(&self.session),
            "Page.captureScreenshot",
            json!({"format": "png"}),
        );
        decode_base64(shot["data"].as_str().expect("image data"))
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct Shown {
    viewer: Option<String>,
    connected: bool,
    badge: Option<String>,
    events: u64,
    marker: Option<String>,
    steals_asked: Option<u64>,
    moved_out: Option<u64>,
    rows: Vec<Row>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Row {
    id: String,
    state: String,
    queued: u64,
    history: Vec<u64>,
    text: String,
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(decode_base64("aGVhcnNheQ=="), b"hearsay");
    assert_eq!(decode_base64("aGVhcg=="), b"hear");
    assert_eq!(decode_base64("aGVh"), b"hea");
}

#[test]
fn the_dashboard_shows_the_cluster_and_follows_its_load() {
    let required = std::env::var("HEARSAY_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let Some(binary) = find_browser() else {
        assert!(
            !required,
            "HEARSAY_REQUIRE_BROWSER=1 but no Chromium was found (install Debian's `chromium`, \
             or set HEARSAY_CHROMIUM)"
        );
        eprintln!(
            "SKIPPED: no Chromium found (tried {BROWSERS:?} on PATH and HEARSAY_CHROMIUM); \
             install Debian's `chromium` to run the browser test"
        );
        return;
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Gossip every 100 ms: the page's history (60 events) then spans six seconds.
    let nodes = runtime.block_on(cluster_gossiping_every(&[2, 2, 2], 100, Some("node")));
    let ids: Vec<String> = nodes.iter().map(|n| n.id().to_string()).collect();
    let entry = nodes[0].api_addr();
    let url = format!("http://{entry}/");

    let mut browser = Browser::launch(&binary);
    let page = Page::open(&mut browser, &url);

    // All three nodes appear, alive, viewed from the first, and the stream is live.
    let before = page.wait_for(&mut browser, "three alive nodes", |shown| {
        shown.connected
            && shown.rows.len() == 3
            && shown.rows.iter().all(|r| r.state == "alive")
            && shown.viewer.as_deref() == Some(ids[0].as_str())
    });
    let mut listed: Vec<&str> = before.rows.iter().map(|r| r.id.as_str()).collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    for row in &before.rows {
        assert!(row.text.contains(&row.id), "the id is on screen: {row:?}");
    }
    assert_eq!(
        before
            .rows
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        expected,
        "sorted by id"
    );
    assert!(
        before.rows.iter().all(|r| r.queued == 0),
        "idle at first: {before:#?}"
    );
    // A reload would lose this.
    page.eval(&mut browser, "window.hearsayTestMarker = 'same page'");

    // Nine jobs on six slots: three must wait somewhere. Then a trickle of short jobs, so that
    // the screenshot shows placement rates and some history.
    let http = http();
    runtime.block_on(async {
        for _ in 0..9 {
            submit(
                &http,
                entry,
                "/v1/jobs",
                &json!({"kind": "sleep", "ms": 2500}),
            )
            .await;
        }
    });
    let trickle = runtime.spawn({
        let http = http.clone();
        async move {
            for i in 0..60u64 {
                let ms = 200 + (i * 137) % 900;
                let job = json!({"kind": "sleep", "ms": ms});
                let _ = tokio::time::timeout(
                    PATIENCE,
                    common::request(
                        &http,
                        hyper::Method::POST,
                        entry,
                        "/v1/jobs",
                        &job.to_string(),
                    ),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });

    let after = page.wait_for(&mut browser, "a queue growing after the jobs", |shown| {
        shown.rows.iter().any(|r| {
            // What the row showed, event after event, on the same page: an empty queue first,
            // waiting jobs later. (The history, not the queue now: the queue may have drained
            // again by the time this is polled on a busy machine.)
            let first_busy = r.history.iter().position(|&q| q > 0);
            first_busy.is_some_and(|i| r.history[..i].contains(&0))
        })
    });
    assert_eq!(after.marker.as_deref(), Some("same page"), "no reload");
    assert!(after.events > before.events, "live updates");
    assert!(after.connected);

    // Let the history and the rates build up, then take the picture.
    let settled = after.events + 50;
    let moves = |key: &str| {
        let answer = runtime.block_on(common::request(
            &http,
            hyper::Method::GET,
            entry,
            "/v1/cluster",
            "",
        ));
        let view: Value = serde_json::from_slice(&answer.body).expect("JSON");
        view["moves"][key].as_u64().expect("moves in /v1/cluster")
    };
    let (asked_before, out_before) = (moves("steals_asked"), moves("stolen_out"));
    let shown = page.wait_for(&mut browser, "more events", |shown| shown.events >= settled);
    // The moves card shows the node's counters as the stream carries them: between what the
    // API said before and after (they only grow).
    let (asked_after, out_after) = (moves("steals_asked"), moves("stolen_out"));
    let asked = shown.steals_asked.expect("the page shows steals asked");
    assert!((asked_before..=asked_after).contains(&asked), "{shown:#?}");
    let out = shown.moved_out.expect("the page shows jobs moved out");
    assert!((out_before..=out_after).contains(&out), "{shown:#?}");
    let png = page.screenshot(&mut browser);
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&out, &png).expect("write the screenshot");
    eprintln!("screenshot: {}", out.display());
    if std::env::var("HEARSAY_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::write(&docs, &png).expect("write docs/dashboard.png");
        eprintln!("updated {}", docs.display());
    }

    // The node goes away: the page says it is reconnecting, and keeps what it showed.
    trickle.abort();
    runtime.block_on(leave_all(&nodes));
    let gone = page.wait_for(&mut browser, "the reconnecting badge", |shown| {
        !shown.connected && shown.badge.as_deref() == Some("reconnecting")
    });
    assert_eq!(gone.rows.len(), 3, "the last map stays on screen");
}

/// The browser, or `None` (and a note) where it is not installed and not required.
fn browser_or_skip() -> Option<PathBuf> {
    let required = std::env::var("HEARSAY_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let found = find_browser();
    assert!(
        found.is_some() || !required,
        "HEARSAY_REQUIRE_BROWSER=1 but no Chromium was found"
    );
    if found.is_none() {
        eprintln!("SKIPPED: no Chromium found (tried {BROWSERS:?} on PATH and HEARSAY_CHROMIUM)");
    }
    found
}

#[test]
fn a_guarded_node_s_dashboard_streams_with_the_token_from_the_address_fragment() {
    const TOKEN: &str = "dashboard-test-token-0123456789";
    let Some(binary) = browser_or_skip() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let node = runtime.block_on(async {
        let mut config = common::config(5, 1, 100);
        config.node_id = Some("guarded-1".parse().unwrap());
        config.api_token = Some(hearsay_worker::auth::ApiToken::new(TOKEN).unwrap());
        hearsay_worker::Node::start(config)
            .await
            .expect("start node")
    });
    let api = node.api_addr();
    let mut browser = Browser::launch(&binary);

    // Without the token the page loads (it holds no data) but the stream is refused, and the
    // page says so rather than retrying for ever.
    let page = Page::open(&mut browser, &format!("http://{api}/"));
    let refused = page.wait_for(&mut browser, "the unauthorized badge", |shown| {
        shown.badge.as_deref() == Some("unauthorized")
    });
    assert!(!refused.connected);
    assert!(refused.rows.is_empty(), "no data without the token");

    // With the token in the fragment: live, and the token is gone from the address bar.
    let page = Page::open(&mut browser, &format!("http://{api}/#token={TOKEN}"));
    let shown = page.wait_for(&mut browser, "the node, live", |shown| {
        shown.connected && shown.rows.len() == 1 && shown.viewer.as_deref() == Some("guarded-1")
    });
    assert_eq!(shown.rows[0].state, "alive");
    let address = page.eval(&mut browser, "location.href");
    assert_eq!(
        address,
        json!(format!("http://{api}/")),
        "the token left the address bar"
    );
    let before = shown.events;
    page.wait_for(&mut browser, "more events", |shown| {
        shown.events > before + 2
    });
    runtime.block_on(leave_all(&[node]));
}
