//! The property test: whatever order answers, losses, timeouts, verdicts and restarts come
//! in, no job runs twice and every accepted job ends once.

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Submit(usize),
    /// A submission to a node with one of a few keys and one of two bodies.
    Keyed(usize, u8, u8),
    Deliver(usize),
    Drop(usize),
    NotSent(usize),
    Advance(u64),
    End(usize, usize),
    Room(usize, bool),
    Idle(usize),
    Verdict(usize, usize, u8),
    Restart(usize),
}

const NODES: usize = 4;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NODES).prop_map(Op::Submit),
        1 => (0..NODES, 0u8..3, 0u8..2).prop_map(|(n, k, b)| Op::Keyed(n, k, b)),
        6 => any::<usize>().prop_map(Op::Deliver),
        2 => any::<usize>().prop_map(Op::Drop),
        1 => any::<usize>().prop_map(Op::NotSent),
        2 => (1u64..3_000).prop_map(Op::Advance),
        2 => (0..NODES, any::<usize>()).prop_map(|(n, k)| Op::End(n, k)),
        1 => (0..NODES, any::<bool>()).prop_map(|(n, b)| Op::Room(n, b)),
        2 => (0..NODES).prop_map(Op::Idle),
        1 => (0..NODES, 0..NODES, 0u8..3).prop_map(|(o, s, v)| Op::Verdict(o, s, v)),
        1 => (0..NODES).prop_map(Op::Restart),
    ]
}

/// A keyed submission: its node, that node's incarnation, the key, the body, the ticket.
type KeyedSubmission = (usize, u64, u8, u8, Ticket);

fn run(ops: &[Op], policy: Policy, seed: u64) -> World {
    let mut w = World::new(NODES, policy, seed);
    let mut keys: Vec<KeyedSubmission> = Vec::new();
    for op in ops {
        match *op {
            Op::Submit(i) => {
                w.submit(i, plain());
            }
            Op::Keyed(i, key, body) => {
                let ticket = w.submit(i, keyed(&format!("key-{key}"), body));
                keys.push((i, w.nodes[i].incarnation, key, body, ticket));
            }
            Op::Deliver(k) if !w.flight.is_empty() => w.deliver(k % w.flight.len()),
            Op::Drop(k) if !w.flight.is_empty() => {
                w.flight.remove(k % w.flight.len());
            }
            Op::NotSent(k) if !w.flight.is_empty() => w.not_sent(k % w.flight.len()),
            Op::Advance(ms) => w.advance(Duration::from_millis(ms)),
            Op::End(i, k) => w.end(i, k, JobStatus::Succeeded),
            Op::Room(i, room) => w.nodes[i].room = room,
            Op::Idle(i) => w.idle(i),
            Op::Verdict(o, s, v) if o != s => {
                let verdict = [Verdict::Dead, Verdict::Left, Verdict::Alive][usize::from(v)];
                w.verdict(o, s, verdict);
            }
            Op::Restart(i) => w.restart(i, policy),
            _ => {}
        }
        w.publish();
        w.check_safety();
    }
    w.quiesce();
    check_keys(&w, &keys);
    w
}

/// Within one life of a node, a key names one job: every submission with it that was not
/// refused is answered with that job and came with its body; a submission refused as reused
/// came after one with the other body.
fn check_keys(w: &World, keys: &[KeyedSubmission]) {
    let mut named: HashMap<(usize, u64, u8), (u8, JobId)> = HashMap::new();
    for (k, &(node, incarnation, key, body, ticket)) in keys.iter().enumerate() {
        let Some(reply) = w.reply_at(node, incarnation, ticket) else {
            continue; // its node restarted before answering
        };
        let id = match reply {
            Reply::Accepted { id, .. } | Reply::Replayed { id } => *id,
            Reply::Refused(SubmitRefusal::KeyReused { .. }) => {
                // The key was bound to an earlier submission of the other body (which may
                // have been refused since, freeing the key).
                let earlier = keys[..k]
                    .iter()
                    .any(|&(n, i, kk, b, _)| (n, i, kk) == (node, incarnation, key) && b != body);
                assert!(
                    earlier,
                    "key-{key} refused as reused, never used with another body"
                );
                continue;
            }
            Reply::Refused(_) => continue,
        };
        match named.get(&(node, incarnation, key)) {
            Some(&(b, first)) => {
                assert_eq!(b, body, "key-{key}: another body got a job");
                assert_eq!(first, id, "key-{key} named two jobs");
            }
            None => {
                named.insert((node, incarnation, key), (body, id));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever order answers, losses, timeouts, verdicts and restarts come in, no job is ever
    /// put in two executors, and once everything is delivered every job accepted reaches
    /// exactly one terminal state at its entry node; an idempotency key names one job.
    #[test]
    fn no_job_runs_twice_and_every_accepted_job_ends_once(
        ops in proptest::collection::vec(op(), 1..120),
        seed in any::<u64>(),
        random in any::<bool>(),
    ) {
        let policy = if random { Policy::Random } else { Policy::P2c };
        let w = run(&ops, policy, seed);
        w.check_settled();
        prop_assert!(w.t0 <= w.now);
    }
}
