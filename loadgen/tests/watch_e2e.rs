//! `loadgen watch --once` against a real in-process cluster on loopback, and against a closed
//! port.

mod common;

use common::{args, kill_all, loadgen, start_nodes};
use hearsay_scheduler::Policy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_prints_every_node_of_a_real_cluster() {
    let nodes = start_nodes(2, Policy::P2c).await;
    let api = nodes[0].api_addr().to_string();
    let output = loadgen(args(&["watch", &api, "--once"])).await;
    // Also with the http:// form and a refresh interval given.
    let output_http = loadgen(args(&[
        "watch",
        &format!("http://{}", nodes[1].api_addr()),
        "--once",
        "--interval",
        "100",
    ]))
    .await;
    kill_all(&nodes);

    for (output, from) in [(&output, "t0"), (&output_http, "t1")] {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "exit {:?}: {stderr}",
            output.status
        );
        assert!(
            !stdout.contains('\x1b'),
            "no escapes with --once: {stdout:?}"
        );
        assert!(stdout.contains(&format!("seen from {from}")), "{stdout}");
        assert!(stdout.contains("2 nodes: 2 alive"), "{stdout}");
        for id in ["t0", "t1"] {
            let row = stdout
                .lines()
                .find(|l| l.starts_with(&format!("{id} ")))
                .unwrap_or_else(|| panic!("no row for {id} in {stdout}"));
            assert!(row.contains("alive") && row.contains("/1"), "{row}");
        }
    }
}

#[tokio::test]
async fn once_against_a_closed_port_fails_with_one_line() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let target = format!("127.0.0.1:{port}");
    let output = loadgen(args(&["watch", &target, "--once"])).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exited 0: {stderr}");
    assert!(stderr.starts_with("loadgen: cannot read"), "{stderr}");
    assert!(stderr.contains(&target), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn bad_input_is_refused_with_one_line() {
    for list in [
        &["watch", "not a url", "--once"][..],
        &["watch", "https://127.0.0.1:1", "--once"],
        &["watch", "127.0.0.1:1", "--interval", "0"],
        &["watch", "127.0.0.1:1", "--interval", "soon"],
    ] {
        let output = loadgen(args(list)).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{list:?} exited 0: {stderr}");
        assert!(stderr.starts_with("loadgen: "), "{list:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{list:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
