//! What the worker's tests share: the test kit (`hearsay-testkit`), its in-process cluster and
//! HTTP client. Every wait is bounded by [`PATIENCE`].

#![allow(unused_imports)] // each test file uses a part

pub use hearsay_testkit::http::{http, request, request_bytes, request_with, submit, Answer, Http};
pub use hearsay_testkit::inproc::{
    await_all_alive, await_condition, cluster, cluster_gossiping_every, cluster_of, config,
    leave_all,
};
pub use hearsay_testkit::PATIENCE;
