//! The dashboard in a real browser: headless Chromium (Debian's `chromium` package) loads `GET /`
//! from one node of a three-node cluster started in-process, shows all three nodes, follows a
//! change of queue depth after jobs are submitted — live, without reloading — draws its charts
//! from the node's history (`GET /v1/history`: the peers' joins, from before the page loaded, on
//! its timeline; the cluster's throughput from every node's gossiped counts), and is
//! photographed: the screenshot's pixels show each chart's lines in their colours. A guarded
//! node's page asks for the token in a field (a wrong one is refused, the right one streams) and
//! takes it from the address fragment; a node that hears only sealed datagrams it cannot open
//! says on its page that it is alone, and why.
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

#[path = "dashboard/browser.rs"]
mod browser;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use browser::{browser_or_skip, pixels_of, Browser, Page};
use common::{cluster_gossiping_every, http, leave_all, submit, PATIENCE};
use serde_json::{json, Value};

/// The runtime the in-process nodes run on; they stop with it.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_dashboard_shows_the_cluster_and_follows_its_load() {
    let Some(binary) = browser_or_skip() else {
        return;
    };

    let runtime = runtime();
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

    // The charts come from the node's own history (GET /v1/history), which reaches back before
    // the page was opened: the peers' joins are on the timeline. The throughput is the
    // cluster's, summed from every node's gossiped counts of jobs ended.
    let charted = page.wait_for(&mut browser, "charts drawn from the history", |shown| {
        shown.history_samples > 10
            && shown.throughput > 0.0
            && ["c-queue", "c-rate", "c-sojourn"]
                .iter()
                .all(|id| shown.chart(id).points > 0)
    });
    assert_eq!(charted.history_error, None);
    for peer in &ids[1..] {
        assert!(
            charted
                .timeline
                .iter()
                .any(|e| e.kind == "joined" && &e.node == peer),
            "{peer} joined, on the timeline from before the page loaded: {charted:#?}"
        );
    }
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

    // The picture shows the lines, in the series' colours: the queue chart's first node and
    // the done series in blue (#3b6fd8); on the sojourn chart p50 in blue over p99 in amber
    // (#e39b1b), which it hides where they are equal.
    let (blue, amber) = ([0x3b, 0x6f, 0xd8], [0xe3, 0x9b, 0x1b]);
    for (id, colours) in [
        ("c-queue", vec![blue]),
        ("c-rate", vec![blue]),
        ("c-sojourn", vec![blue, amber]),
    ] {
        let chart = charted.chart(id);
        let drawn: usize = colours
            .iter()
            .map(|&c| pixels_of(&png, chart.rect, c))
            .sum();
        assert!(
            drawn >= 20,
            "the screenshot shows {drawn} pixels of the lines on {id} at {:?}",
            chart.rect
        );
    }

    // The per-node chart shows running jobs or CPU when asked.
    let cpu = page.eval(
        &mut browser,
        "(() => { const pick = document.getElementById('c-queue-what'); \
          pick.value = 'cpu_permille'; pick.dispatchEvent(new Event('change')); \
          const c = document.getElementById('c-queue'); \
          return [c.dataset.what, Number(c.dataset.points)]; })()",
    );
    assert_eq!(cpu[0], "cpu_permille", "{cpu}");
    assert!(cpu[1].as_u64().is_some_and(|n| n > 0), "CPU drawn: {cpu}");

    // The node goes away: the page says it is reconnecting, and keeps what it showed.
    trickle.abort();
    runtime.block_on(leave_all(&nodes));
    let gone = page.wait_for(&mut browser, "the reconnecting badge", |shown| {
        !shown.connected && shown.badge.as_deref() == Some("reconnecting")
    });
    assert_eq!(gone.rows.len(), 3, "the last map stays on screen");
}

#[test]
fn a_guarded_node_s_dashboard_streams_with_the_token_from_the_address_fragment() {
    const TOKEN: &str = "dashboard-test-token-0123456789";
    let Some(binary) = browser_or_skip() else {
        return;
    };
    let runtime = runtime();
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
    assert_eq!(
        refused.token_field.as_deref(),
        Some("shown"),
        "the page asks for the token"
    );

    // Typed into the field: a wrong token is refused again; the right one makes the page live.
    let type_token = |browser: &mut Browser, token: &str| {
        page.eval(
            browser,
            &format!(
                "document.getElementById('token').value = {token:?}; \
                 document.getElementById('tokenform').requestSubmit(); true"
            ),
        )
    };
    type_token(&mut browser, "not-the-token-at-all-0123456789");
    page.wait_for(
        &mut browser,
        "unauthorized again, after a wrong token",
        |shown| {
            shown.badge.as_deref() == Some("unauthorized")
                && shown.token_field.as_deref() == Some("shown")
        },
    );
    type_token(&mut browser, TOKEN);
    let typed = page.wait_for(
        &mut browser,
        "the node, live, with the typed token",
        |shown| shown.connected && shown.rows.len() == 1 && shown.history_samples > 0,
    );
    assert_eq!(typed.token_field.as_deref(), Some("hidden"));

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

#[test]
fn a_node_that_hears_only_sealed_datagrams_says_on_its_page_why_it_is_alone() {
    let Some(binary) = browser_or_skip() else {
        return;
    };
    let runtime = runtime();
    // `open-a` runs without a cluster key and has no seeds; `keyed-b` holds a key and seeds
    // itself with `open-a`, whose socket receives sealed datagrams it cannot open.
    let dir = std::env::temp_dir().join(format!("hearsay-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("cluster.keys");
    std::fs::write(&keys, format!("# a test key\n{}\n", "cd".repeat(32))).unwrap();
    let nodes = runtime.block_on(async {
        let mut open = common::config(7, 1, 100);
        open.node_id = Some("open-a".parse().unwrap());
        let a = hearsay_worker::Node::start(open)
            .await
            .expect("start open-a");
        let mut keyed = common::config(8, 1, 100);
        keyed.node_id = Some("keyed-b".parse().unwrap());
        keyed.cluster_key_file = Some(keys.clone());
        keyed.seeds.0 = vec![a.gossip_addr()];
        let b = hearsay_worker::Node::start(keyed)
            .await
            .expect("start keyed-b");
        vec![a, b]
    });
    let mut browser = Browser::launch(&binary);
    let page = Page::open(&mut browser, &format!("http://{}/", nodes[0].api_addr()));
    let shown = page.wait_for(&mut browser, "the banner naming sealed drops", |shown| {
        shown.connected
            && shown.alone
            && shown.dropping_now.iter().any(|r| r == "sealed")
            && shown.banner.contains("no seeds")
    });
    assert!(
        shown.banner.contains("No live peer") && shown.banner.contains("no cluster key"),
        "the banner says why: {:?}",
        shown.banner
    );
    assert!(
        shown.banner.contains("no seeds"),
        "and that this node has none: {:?}",
        shown.banner
    );
    assert_eq!(shown.rows.len(), 1, "only itself: {shown:#?}");
    let dropped = page.eval(
        &mut browser,
        "Number(document.documentElement.dataset.receiveErrors)",
    );
    assert!(
        dropped.as_u64().is_some_and(|n| n > 0),
        "the health card counts the drops: {dropped}"
    );
    runtime.block_on(leave_all(&nodes));
    let _ = std::fs::remove_dir_all(&dir);
}
