//! loadgen against a guarded worker (`--api-token-file`): without the token it is refused with
//! `401`; with the token file it discovers the node and runs jobs through it.

use std::time::Duration;

use hearsay_loadgen::bench;
use hearsay_loadgen::client::{Http, RequestError, Submission};
use hearsay_worker::auth::ApiToken;
use hearsay_worker::{Config, Node};

const TOKEN: &str = "loadgen-test-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_and_watch_reach_a_guarded_worker_with_the_token_file() {
    let mut config = Config::loopback();
    config.slots = Some(1);
    config.seed = Some(3);
    config.drain_timeout = 200;
    config.api_token = Some(ApiToken::new(TOKEN).unwrap());
    let node = Node::start(config).await.unwrap();
    let base = format!("http://{}", node.api_addr());

    let open = Http::default();
    match open
        .get_json(&base, "/v1/cluster", Duration::from_secs(5))
        .await
    {
        Err(RequestError::Status { status: 401, .. }) => {}
        other => panic!("expected a 401, got {other:?}"),
    }

    let dir = std::env::temp_dir().join(format!("hearsay-loadgen-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("api.token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let guarded = Http::default().with_token_file(Some(&file)).unwrap();
    let targets = bench::discover(&guarded, std::slice::from_ref(&base))
        .await
        .unwrap();
    assert_eq!(targets[0].node, node.id().as_str());
    let outcome = guarded
        .run_job(
            &base,
            bytes::Bytes::from_static(br#"{"kind":"echo","data":"hi"}"#),
            Submission::Place,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output, Some(serde_json::json!("hi")));

    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let e = Http::default().with_token_file(Some(&empty)).unwrap_err();
    assert!(e.contains("empty"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
    node.leave().await;
}
