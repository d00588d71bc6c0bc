//! Stealing: an idle node takes a queued job, a refused steal goes back, empty answers bring
//! the victim's load as news, and the bounds on asking again.

use super::*;

#[test]
fn an_idle_node_steals_the_newest_queued_job_and_its_entry_node_follows_it_there() {
    let mut w = World::new(2, Policy::Local, 2);
    for _ in 0..3 {
        w.submit(0, plain());
    }
    let newest = *w.nodes[0].running.last().unwrap();
    w.publish();
    w.idle(1);
    assert!(matches!(
        &w.flight[..],
        [Flight::Request {
            message: Request::Steal { .. },
            ..
        }]
    ));
    w.deliver(0); // n0 takes its newest queued job out, answers, and offers it
    assert_eq!(w.nodes[0].running.len(), 2, "out of n0's queue");
    w.deliver(0); // the answer "coming"
    w.deliver(0); // the offer: n1 takes it
    assert_eq!(w.runs[&newest], vec![0, 1]);
    assert_eq!(w.nodes[1].running, vec![newest]);
    w.quiesce();
    w.check_settled();
    assert_eq!(w.starts[&newest], vec![1], "it ran at n1 only");
    assert_eq!(w.settled[&newest], vec![JobStatus::Succeeded]);
    let stats = (w.nodes[0].core.stats(), w.nodes[1].core.stats());
    assert_eq!((stats.0.stolen_out, stats.1.steals_granted), (1, 1));
}

#[test]
fn a_steal_the_thief_refuses_puts_the_job_back_in_the_victims_queue() {
    let mut w = World::new(2, Policy::Local, 2);
    for _ in 0..2 {
        w.submit(0, plain());
    }
    let order = w.nodes[0].running.clone();
    w.publish();
    w.idle(1);
    w.nodes[1].room = false; // full by the time the offer comes
    w.deliver(0);
    w.deliver(0);
    w.deliver(0); // the offer: refused
    w.deliver(0); // its answer: back in n0's queue, at the end as before
    assert_eq!(w.nodes[0].running, order);
    assert!(!w.runs.values().any(|r| r.contains(&1)));
    w.quiesce();
    w.check_settled();
}

/// n0 shows three queued jobs in the map but has run them all since; n2 shows one and has it.
/// An idle n1 asks n0 (the longer queue of the two).
fn stale_victim(seed: u64) -> World {
    let mut w = World::new(3, Policy::Local, seed);
    for _ in 0..3 {
        w.submit(0, plain());
    }
    w.submit(2, plain());
    w.publish();
    while !w.nodes[0].running.is_empty() {
        w.end(0, 0, JobStatus::Succeeded);
    }
    w.idle(1);
    assert!(matches!(
        &w.flight[..],
        [Flight::Request {
            to: 0,
            message: Request::Steal { .. },
            ..
        }]
    ));
    w
}

fn steals_to(w: &World) -> Vec<usize> {
    w.flight
        .iter()
        .filter_map(|f| match f {
            Flight::Request {
                to,
                message: Request::Steal { .. },
                ..
            } => Some(*to),
            _ => None,
        })
        .collect()
}

#[test]
fn an_empty_answer_brings_the_victims_load_as_news_and_the_thief_asks_another_peer_at_once() {
    let mut w = stale_victim(3);
    w.deliver(0); // n0 has none: it answers empty, with its report
    assert!(matches!(
        &w.flight[..],
        [Flight::Answer {
            answer: Answer::Steal(StealAnswer::Empty { load: Some(r) }),
            ..
        }] if r.node == id(0) && r.load.queued == 0
    ));
    w.deliver(0);
    assert_eq!(w.news.len(), 1, "n1 merges n0's report");
    assert_eq!((w.news[0].0, w.news[0].1.node.clone()), (1, id(0)));
    assert_eq!(w.map.get(&id(0)).unwrap().report().load.queued, 0);
    assert_eq!(steals_to(&w), vec![2], "asked n2 at once");
    let stats = w.nodes[1].core.stats();
    assert_eq!(
        (
            stats.steals_asked,
            stats.steals_empty,
            stats.steals_again,
            stats.steal_news
        ),
        (2, 1, 1, 1)
    );
    w.deliver(0); // n2 gives its job
    w.deliver(0);
    w.deliver(0);
    assert_eq!(w.nodes[1].running.len(), 1);
    w.quiesce();
    w.check_settled();
}

#[test]
fn a_thief_asks_again_at_most_steal_retries_times_in_a_row_and_never_the_same_peer() {
    let mut w = stale_victim(4);
    // n2's job has run too: both answers are empty.
    w.end(2, 0, JobStatus::Succeeded);
    w.deliver(0);
    w.deliver(0);
    assert_eq!(steals_to(&w), vec![2]);
    w.deliver(0);
    w.deliver(0);
    assert!(
        w.flight.is_empty(),
        "one retry, then it waits: {:?}",
        w.flight
    );
    assert_eq!(w.nodes[1].core.stats().steals_asked, 2);
    // The next idle call is a new row: the map shows no queue anywhere now, so no ask.
    w.idle(1);
    assert!(w.flight.is_empty());
    assert_eq!(w.news.len(), 2);
}

#[test]
fn a_thief_that_got_work_meanwhile_does_not_ask_again() {
    let mut w = stale_victim(5);
    w.deliver(0);
    w.submit(1, plain()); // n1 is busy by the time the empty answer comes
    w.deliver(0);
    assert!(steals_to(&w).is_empty());
    assert_eq!(w.news.len(), 1, "the news is merged all the same");
}

#[test]
fn a_report_of_another_node_than_the_one_asked_is_not_taken_as_news() {
    let mut w = stale_victim(6);
    let Flight::Request { request, .. } = w.flight.remove(0) else {
        unreachable!("the steal");
    };
    let mut forged = report(2, 1, 99);
    forged.load.queued = 7;
    w.answer(
        1,
        request,
        Answer::Steal(StealAnswer::Empty {
            load: Some(Box::new(forged)),
        }),
    );
    assert!(w.news.is_empty());
    assert_eq!(w.nodes[1].core.stats().steal_news, 0);
}
