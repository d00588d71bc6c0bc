//! Idempotency keys: one key names one job, another body is refused, a refusal frees the key.

use super::*;

#[test]
fn an_idempotency_key_names_one_job_and_refuses_another_body() {
    let mut w = World::new(1, Policy::P2c, 1);
    let first = w.submit(0, keyed("order-42", 1));
    let Some(Reply::Accepted { id: job, .. }) = w.reply(first).cloned() else {
        panic!();
    };
    let again = w.submit(0, keyed("order-42", 1));
    assert_eq!(w.reply(again), Some(&Reply::Replayed { id: job }));
    let other = w.submit(0, keyed("order-42", 2));
    assert_eq!(
        w.reply(other),
        Some(&Reply::Refused(SubmitRefusal::KeyReused {
            key: "order-42".into()
        }))
    );
    assert_eq!(w.runs.len(), 1, "one job ran");
    assert!(SubmitRefusal::KeyReused { key: "k".into() }
        .to_string()
        .contains("Idempotency-Key"));
}

#[test]
fn a_key_submitted_again_while_its_job_is_placed_gets_that_job_and_a_refusal_frees_it() {
    let mut w = forwarding(2, 4);
    let first = w.submit(0, keyed("k", 1));
    let second = w.submit(0, keyed("k", 1));
    assert!(
        w.reply(first).is_none() && w.reply(second).is_none(),
        "both wait for the peer"
    );
    w.deliver(0);
    w.deliver(0);
    let Some(Reply::Accepted { id: job, .. }) = w.reply(first).cloned() else {
        panic!();
    };
    assert_eq!(w.reply(second), Some(&Reply::Replayed { id: job }));
    // A key whose submission was refused is free again.
    w.nodes[1].room = false;
    let refused = w.submit(0, keyed("j", 1));
    w.deliver(w.flight.len() - 1);
    let last = w.flight.len() - 1;
    w.deliver(last);
    assert!(matches!(
        w.reply(refused),
        Some(Reply::Refused(SubmitRefusal::Nowhere { .. }))
    ));
    w.nodes[1].room = true;
    let retried = w.submit(0, keyed("j", 2));
    w.deliver(w.flight.len() - 1);
    let last = w.flight.len() - 1;
    w.deliver(last);
    assert!(matches!(w.reply(retried), Some(Reply::Accepted { .. })));
}
