//! The browser side of the dashboard tests: a headless Chromium driven over the DevTools pipe,
//! the pages it opens, what a page shows (read from its `data-` attributes), and a look at the
//! pixels of its screenshot.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::PATIENCE;

/// Names tried for the browser, in order, when `HEARSAY_CHROMIUM` is not set.
pub(crate) const BROWSERS: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

pub(crate) fn find_browser() -> Option<PathBuf> {
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
pub(crate) struct Browser {
    child: Child,
    commands: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
    profile: PathBuf,
    stderr_log: PathBuf,
}

impl Browser {
    pub(crate) fn launch(binary: &Path) -> Browser {
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
pub(crate) struct Page {
    session: String,
}

impl Page {
    pub(crate) fn open(browser: &mut Browser, url: &str) -> Page {
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
    pub(crate) fn eval(&self, browser: &mut Browser, expression: &str) -> Value {
        let answer = browser.call(
            Some(&self.session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        answer["result"]["value"].clone()
    }

    /// What the dashboard shows now, from its data attributes and text.
    pub(crate) fn shown(&self, browser: &mut Browser) -> Shown {
        const READ: &str = r##"(() => {
            const root = document.documentElement.dataset;
            return {
                viewer: root.viewer || null,
                connected: root.connected === "true",
                badge: root.badge || null,
                events: Number(root.events || 0),
                marker: window.hearsayTestMarker || null,
                steals_asked: root.stealsAsked === undefined ? null : Number(root.stealsAsked),
                throughput: Number(root.throughput || 0),
                history_samples: Number(root.historySamples || 0),
                history_error: root.historyError || null,
                token_field: root.tokenField || null,
                alone: root.alone === "true",
                dropping_now: (root.droppingNow || "").split(",").filter((s) => s),
                banner: document.getElementById("alone").innerText,
                charts: ["c-queue", "c-rate", "c-sojourn"].map((id) => {
                    const canvas = document.getElementById(id);
                    const r = canvas.getBoundingClientRect();
                    return {
                        id,
                        points: Number(canvas.dataset.points || 0),
                        rect: [r.left, r.top, r.width, r.height].map(Math.round),
                    };
                }),
                timeline: Array.from(document.querySelectorAll("#events li")).map((li) => ({
                    kind: li.dataset.kind,
                    node: li.dataset.node,
                })),
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
    pub(crate) fn wait_for(
        &self,
        browser: &mut Browser,
        what: &str,
        check: impl Fn(&Shown) -> bool,
    ) -> Shown {
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

    pub(crate) fn screenshot(&self, browser: &mut Browser) -> Vec<u8> {
        let shot = browser.call(
            Some(&self.session),
            "Page.captureScreenshot",
            json!({"format": "png"}),
        );
        decode_base64(shot["data"].as_str().expect("image data"))
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Shown {
    pub(crate) viewer: Option<String>,
    pub(crate) connected: bool,
    pub(crate) badge: Option<String>,
    pub(crate) events: u64,
    pub(crate) marker: Option<String>,
    pub(crate) steals_asked: Option<u64>,
    pub(crate) moved_out: Option<u64>,
    /// The cluster's jobs done per second, from every node's gossiped counts.
    pub(crate) throughput: f64,
    pub(crate) history_samples: u64,
    pub(crate) history_error: Option<String>,
    pub(crate) token_field: Option<String>,
    pub(crate) alone: bool,
    pub(crate) dropping_now: Vec<String>,
    pub(crate) banner: String,
    pub(crate) charts: Vec<Chart>,
    pub(crate) timeline: Vec<TimelineEntry>,
    pub(crate) rows: Vec<Row>,
}

impl Shown {
    pub(crate) fn chart(&self, id: &str) -> &Chart {
        self.charts
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no chart {id}: {self:#?}"))
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Chart {
    pub(crate) id: String,
    /// Points the page drew on it.
    pub(crate) points: u64,
    /// Where it is on screen, in CSS pixels: left, top, width, height.
    pub(crate) rect: [i64; 4],
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct TimelineEntry {
    pub(crate) kind: String,
    pub(crate) node: String,
}

/// How many pixels of `rect` (left, top, width, height) in the PNG `png` are within a small
/// distance of `colour`: the proof, from the picture itself, that something was drawn there in
/// that colour.
pub(crate) fn pixels_of(png: &[u8], rect: [i64; 4], colour: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "8-bit screenshot");
    let step = info.color_type.samples();
    assert!(step >= 3, "a colour screenshot: {:?}", info.color_type);
    let (width, height) = (i64::from(info.width), i64::from(info.height));
    let [left, top, w, h] = rect;
    let mut count = 0;
    for y in top.max(0)..(top + h).min(height) {
        for x in left.max(0)..(left + w).min(width) {
            let at = (y * width + x) as usize * step;
            let near = (0..3).all(|i| buf[at + i].abs_diff(colour[i]) <= 24);
            count += usize::from(near);
        }
    }
    count
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) state: String,
    pub(crate) queued: u64,
    pub(crate) history: Vec<u64>,
    pub(crate) text: String,
}

pub(crate) fn decode_base64(text: &str) -> Vec<u8> {
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

/// The browser, or `None` (and a note) where it is not installed and not required.
pub(crate) fn browser_or_skip() -> Option<PathBuf> {
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
fn base64_decodes() {
    assert_eq!(decode_base64("aGVhcnNheQ=="), b"hearsay");
    assert_eq!(decode_base64("aGVhcg=="), b"hear");
    assert_eq!(decode_base64("aGVh"), b"hea");
}
