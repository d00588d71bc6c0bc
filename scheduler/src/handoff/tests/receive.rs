//! The node that takes offers: what it refuses, and an offer seen twice.

use super::*;

#[test]
fn a_node_refuses_fenced_ids_earlier_incarnations_and_too_many_moves() {
    let now = Instant::now();
    let mut core = Handoff::new(HandoffConfig::new(id(1), 2));
    let offer = |job: u64, incarnation: u64, path: usize| Offer {
        id: JobId(job),
        entry: id(0),
        incarnation,
        kind: MoveKind::Forward,
        path: (0..path).map(id).collect(),
    };
    assert_eq!(core.handle_ask(now, JobId(1), 2), AskAnswer::Unknown);
    assert_eq!(
        core.handle_ask(now, JobId(9), 1),
        AskAnswer::Restarted,
        "asked after an earlier life"
    );
    assert_eq!(
        core.handle_offer(now, &offer(1, 2, 1), Ok(())),
        OfferAnswer::Refused(Refusal::Fenced)
    );
    assert_eq!(
        core.handle_offer(now, &offer(2, 1, 1), Ok(())),
        OfferAnswer::Refused(Refusal::WrongIncarnation)
    );
    assert_eq!(
        core.handle_offer(now, &offer(3, 2, 2), Ok(())),
        OfferAnswer::Refused(Refusal::TooManyMoves)
    );
    assert_eq!(
        core.handle_offer(now, &offer(4, 2, 1), Err(Refusal::Full)),
        OfferAnswer::Refused(Refusal::Full)
    );
    assert!(core.poll_action().is_none(), "nothing runs");
    assert_eq!(
        core.handle_offer(now, &offer(5, 2, 1), Ok(())),
        OfferAnswer::Accepted(JobStatus::Queued)
    );
    assert!(matches!(
        core.poll_action(),
        Some(Action::Run { id: JobId(5), .. })
    ));
    // The same offer again: the job as it stands, nothing new runs.
    core.handle_started(now, JobId(5));
    assert_eq!(
        core.handle_offer(now, &offer(5, 2, 1), Ok(())),
        OfferAnswer::Accepted(JobStatus::Running)
    );
    assert!(core.poll_action().is_none());
    assert_eq!(
        core.handle_ask(now, JobId(5), 2),
        AskAnswer::Held(JobStatus::Running)
    );
    core.leave();
    assert_eq!(
        core.handle_offer(now, &offer(6, 2, 1), Ok(())),
        OfferAnswer::Refused(Refusal::Leaving)
    );
}
