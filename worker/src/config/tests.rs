//! Parsing the flags, their defaults, and the settings made of them.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use hearsay_scheduler::Policy;
use hearsay_shared::{seal, wire, NodeId};

use super::settings::open_file_limit;
use super::*;
use crate::gossip::sealing::KeyText;
use crate::http::limits::{BodyLimits, ConnectionLimits};

#[test]
fn no_flags_means_the_default() {
    // Run without HEARSAY_* variables in the environment, as the test suite is.
    assert_eq!(
        Config::try_parse_from(["worker"]).unwrap(),
        Config {
            data_dir: None,
            ..Config::default()
        }
    );
    assert_eq!(
        Config::try_parse_from(["worker", "--data-dir", "none"]).unwrap(),
        Config::default()
    );
}

#[test]
fn the_data_dir_is_a_path_none_or_under_the_state_directory() {
    let c = Config::try_parse_from(["worker", "--data-dir", "/var/lib/h"]).unwrap();
    assert_eq!(c.data_path("n1").unwrap(), Some("/var/lib/h".into()));
    assert_eq!(Config::default().data_path("n1").unwrap(), None);
    let e = Config::try_parse_from(["worker", "--data-dir", ""]).unwrap_err();
    assert!(e.to_string().contains("none"), "{e}");
}

#[test]
fn flags_are_parsed() {
    let c = Config::try_parse_from([
        "worker",
        "--node-id",
        "n1",
        "--api",
        "127.0.0.1:0",
        "--seeds",
        "127.0.0.1:1, 127.0.0.2:2,",
        "--slots",
        "4",
        "--gossip-interval",
        "50",
        "--log-format",
        "json",
        "--seed",
        "7",
        "--queue-limit",
        "3",
        "--policy",
        "least-loaded",
        "--retain-ms",
        "1000",
        "--retain-jobs",
        "10",
        "--drain-timeout",
        "250",
        "--retain-bytes",
        "4096",
        "--max-output-bytes",
        "1024",
        "--allowed-hosts",
        "api.example.com,Node-1.internal.",
    ])
    .unwrap();
    assert_eq!(c.node_id, Some(NodeId::new("n1").unwrap()));
    assert_eq!(c.api.port(), 0);
    assert_eq!(
        c.seeds.0,
        vec![
            "127.0.0.1:1".parse::<SocketAddr>().unwrap(),
            "127.0.0.2:2".parse().unwrap()
        ]
    );
    assert_eq!(c.slots(), 4);
    assert_eq!(c.interval(), Duration::from_millis(50));
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.seed, Some(7));
    assert_eq!(c.queue_limit, 3);
    assert_eq!(c.policy, Policy::LeastLoaded);
    assert_eq!(c.retain(), Duration::from_secs(1));
    assert_eq!(c.retain_jobs, 10);
    assert_eq!(c.drain(), Duration::from_millis(250));
    assert_eq!((c.retain_bytes, c.max_output_bytes), (4096, 1024));
    assert!(c.validate().is_ok());
    assert_eq!(c.allowed_hosts.0, ["api.example.com", "node-1.internal"]);
}

#[test]
fn seeds_take_names_kept_for_the_node_to_resolve_and_advertised_addresses() {
    let c = Config::try_parse_from([
        "worker",
        "--seeds",
        "10.0.0.1:7946, hearsay.default.svc.cluster.local:7946,[fd00::1]:7946,\
         not-resolvable-yet:7000,hearsay.default.svc.cluster.local:7946",
        "--advertise-api",
        "10.0.0.5:8080",
        "--advertise-gossip",
        "10.0.0.5:7946",
    ])
    .unwrap();
    assert_eq!(
        c.seeds.0,
        [
            "10.0.0.1:7946".parse::<SocketAddr>().unwrap(),
            "[fd00::1]:7946".parse().unwrap()
        ]
    );
    let names: Vec<String> = c.seeds.1.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "hearsay.default.svc.cluster.local:7946",
            "not-resolvable-yet:7000"
        ],
        "names are kept once each, unresolved"
    );
    assert_eq!(
        c.seeds.to_string(),
        "10.0.0.1:7946,[fd00::1]:7946,hearsay.default.svc.cluster.local:7946,\
         not-resolvable-yet:7000"
    );
    assert_eq!(c.advertise_api, Some("10.0.0.5:8080".parse().unwrap()));
    assert_eq!(c.advertise_gossip, Some("10.0.0.5:7946".parse().unwrap()));
    assert!(c.validate().is_ok());
}

#[test]
fn connection_and_body_limits_are_parsed_and_capped() {
    let c = Config::try_parse_from([
        "worker",
        "--body-timeout",
        "500",
        "--body-min-rate",
        "0",
        "--body-rate-grace",
        "100",
        "--max-connections",
        "10",
        "--max-connections-per-client",
        "50",
    ])
    .unwrap();
    assert_eq!(
        c.body_limits(),
        BodyLimits {
            timeout: Duration::from_millis(500),
            min_rate: 0,
            grace: Duration::from_millis(100),
        }
    );
    assert_eq!(
        c.connection_limits(1),
        ConnectionLimits {
            total: 10,
            per_client: 10
        },
        "the per-client cap is at most the total"
    );
    assert_eq!(Config::default().body_limits(), BodyLimits::default());
    // The default follows this process's open-file limit.
    let limit = open_file_limit().unwrap_or(1024);
    assert_eq!(
        Config::default().connection_limits(2).total,
        ConnectionLimits::from_descriptors(limit, 2)
    );
    assert!(Config::try_parse_from(["worker", "--max-connections", "0"]).is_err());
    assert!(Config::try_parse_from(["worker", "--body-timeout", "0"]).is_err());
}

#[test]
fn bad_values_are_refused() {
    assert!(Config::try_parse_from(["worker", "--slots", "0"]).is_err());
    assert!(Config::try_parse_from(["worker", "--node-id", "a b"]).is_err());
    assert!(Config::try_parse_from(["worker", "--seeds", "nope"]).is_err());
    assert!(Config::try_parse_from(["worker", "--seeds", "a b:1"]).is_err());
    for flag in ["--advertise-api", "--advertise-gossip"] {
        assert!(Config::try_parse_from(["worker", flag, "host:1"]).is_err());
        for bad in ["0.0.0.0:7946", "10.0.0.1:0"] {
            let e = Config::try_parse_from(["worker", flag, bad])
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(e.flag, flag);
            assert!(e.reason.contains("peers can reach"), "{e}");
        }
    }
    assert!(Config::try_parse_from(["worker", "--policy", "fastest"]).is_err());
    assert!(Config::try_parse_from(["worker", "--load-score", "queue"]).is_err());
    let c = Config::try_parse_from(["worker", "--load-score", "cpu"]).unwrap();
    assert_eq!(c.load_score, hearsay_scheduler::LoadScore::Cpu);
    assert!(Config::try_parse_from(["worker", "--retain-jobs", "0"]).is_err());
    assert!(Config::try_parse_from(["worker", "--allowed-hosts", "a.example:8080"]).is_err());
    let zero_fanout = Config {
        fanout: 0,
        ..Config::default()
    };
    let e = zero_fanout.validate().unwrap_err();
    assert_eq!(e.flag, "--fanout");
    assert!(e.to_string().starts_with("invalid --fanout 0: "), "{e}");
    assert!(Config::default().validate().is_ok());
    assert!(Config::try_parse_from(["worker", "--retain-bytes", "0"]).is_err());
    let e = Config::try_parse_from(["worker", "--retain-bytes", "4096"])
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(e.flag, "--max-output-bytes");
    assert!(
        e.reason.contains("a quarter of --retain-bytes (4096)"),
        "{e}"
    );
}

#[test]
fn a_cluster_key_takes_its_overhead_from_the_budget() {
    let keys = std::env::temp_dir().join(format!("hearsay-config-keys-{}", std::process::id()));
    std::fs::write(&keys, format!("{}\n", "ab".repeat(32))).unwrap();
    let keyed =
        Config::try_parse_from(["worker", "--cluster-key-file", keys.to_str().unwrap()]).unwrap();
    assert!(keyed.is_keyed());
    assert_eq!(keyed.keyring().unwrap().unwrap().ids().len(), 1);
    let node = NodeId::new("n").unwrap();
    let core = keyed.gossip_config(node.clone(), keyed.api, keyed.gossip);
    assert_eq!(core.budget, 1400 - seal::OVERHEAD);
    let open = Config::default().gossip_config(node, keyed.api, keyed.gossip);
    assert_eq!(open.budget, 1400);
    // The smallest budget leaves the core its own minimum.
    let small = Config {
        datagram_budget: wire::MIN_BUDGET + seal::OVERHEAD - 1,
        ..keyed.clone()
    };
    let e = small.validate().unwrap_err();
    assert_eq!(e.flag, "--datagram-budget");
    assert!(e.reason.contains("with a cluster key"), "{e}");
    assert!(Config {
        datagram_budget: wire::MIN_BUDGET + seal::OVERHEAD,
        ..keyed.clone()
    }
    .validate()
    .is_ok());
    // A file and the variable at once are refused.
    let both = Config {
        cluster_key: Some(KeyText("cd".repeat(32))),
        ..keyed
    };
    assert_eq!(both.validate().unwrap_err().flag, "--cluster-key-file");
    std::fs::remove_file(&keys).ok();
}

#[test]
fn node_id_is_derived_from_host_and_port() {
    assert_eq!(
        default_node_id(Some("myhost"), 8080).as_str(),
        "myhost-8080"
    );
    assert_eq!(
        default_node_id(Some("my host/é"), 1).as_str(),
        "my-host---1",
        "odd characters become dashes"
    );
    assert_eq!(default_node_id(None, 9).as_str(), "node-9");
    let long = default_node_id(Some(&"h".repeat(100)), 65535);
    assert_eq!(long.as_str().len(), hearsay_shared::node::MAX_NODE_ID_LEN);
    assert!(long.as_str().ends_with("-65535"));
}
