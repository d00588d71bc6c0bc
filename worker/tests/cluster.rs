//! Nodes started in-process on 127.0.0.1: three find each other through a seed, as their HTTP
//! APIs show, and the others see one of them leave gracefully.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hearsay_worker::{Config, Node, NodeHandle};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

// The bound of every wait: the test kit's.
use hearsay_testkit::PATIENCE;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn cluster(client: &HttpClient, api: SocketAddr) -> Value {
    let uri = format!("http://{api}/v1/cluster").parse().unwrap();
    let response = client.get(uri).await.expect("GET /v1/cluster");
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).expect("JSON body")
}

/// The state each listed node has in this view, by id.
fn state_of<'a>(view: &'a Value, id: &str) -> Option<&'a str> {
    view["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == id)?
        .get("state")?
        .as_str()
}

fn alive_count(view: &Value) -> usize {
    view["nodes"].as_array().map_or(0, |nodes| {
        nodes.iter().filter(|n| n["state"] == "alive").count()
    })
}

/// Polls `check` over the nodes' HTTP APIs until it holds for all of them, or fails after
/// [`PATIENCE`] with the last views seen.
async fn wait_for(
    client: &HttpClient,
    nodes: &[&NodeHandle],
    what: &str,
    check: impl Fn(&Value) -> bool,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut views = Vec::new();
        for node in nodes {
            views.push(cluster(client, node.api_addr()).await);
        }
        if views.iter().all(&check) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}; last views: {views:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(seeds: Vec<SocketAddr>, seed: u64) -> NodeHandle {
    let mut config = Config::loopback();
    config.seeds.0 = seeds;
    config.gossip_interval = 100;
    config.slots = Some(2);
    config.seed = Some(seed);
    Node::start(config).await.expect("start node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_meet_and_see_one_leave() {
    let first = start(vec![], 1).await;
    let second = start(vec![first.gossip_addr()], 2).await;
    let third = start(vec![first.gossip_addr()], 3).await;
    let client = client();

    for node in [&first, &second, &third] {
        assert_ne!(node.api_addr().port(), 0);
        assert_ne!(node.gossip_addr().port(), 0);
        let view = cluster(&client, node.api_addr()).await;
        assert_eq!(view["node"], node.id().as_str());
        let own = &view["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == node.id().as_str());
        let own = own.expect("a node lists itself");
        assert_eq!(
            own["api"],
            node.api_addr().to_string(),
            "reports carry bound addresses"
        );
        assert_eq!(own["gossip"], node.gossip_addr().to_string());
        assert_eq!(own["age_ms"], 0);
        assert_eq!(own["load"]["slots"], 2);
    }

    let all = [&first, &second, &third];
    wait_for(&client, &all, "every node sees 3 alive nodes", |view| {
        alive_count(view) == 3
    })
    .await;

    let leaver = third.id().as_str().to_owned();
    third.leave().await;
    wait_for(
        &client,
        &[&first, &second],
        "the others see the third node as left",
        |view| state_of(view, &leaver) == Some("left") && alive_count(view) == 2,
    )
    .await;
    assert!(
        tokio::net::TcpStream::connect(third.api_addr())
            .await
            .is_err(),
        "a node that left no longer serves HTTP"
    );

    first.leave().await;
    second.leave().await;
}
