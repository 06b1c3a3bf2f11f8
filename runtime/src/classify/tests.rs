//! The settlement table, row by row.

use super::*;

#[test]
fn a_delivery_acked_before_its_call_ended_is_never_answered_again() {
    let r = DlqReason::Panic;
    let nak = Action::Nak {
        delay: Duration::from_secs(1),
    };
    type Row = (Action, bool, Acked, Option<DlqReason>, Counted, Kept);
    let rows: &[Row] = &[
        (
            Action::Ack,
            false,
            Acked::First,
            None,
            Counted::Acked,
            Kept::IfUsed,
        ),
        (
            Action::Ack,
            false,
            Acked::ByHandler,
            None,
            Counted::Acked,
            Kept::IfUsed,
        ),
        (
            Action::DeadLetter(r),
            false,
            Acked::First,
            Some(r),
            Counted::FailedAfterAck,
            Kept::Always,
        ),
        (
            Action::DeadLetter(r),
            true,
            Acked::First,
            None,
            Counted::FailedAfterAck,
            Kept::Always,
        ),
        (
            Action::DeadLetter(r),
            false,
            Acked::ByHandler,
            None,
            Counted::FailedAfterAck,
            Kept::Always,
        ),
        (
            nak,
            false,
            Acked::First,
            None,
            Counted::FailedAfterAck,
            Kept::Always,
        ),
        (
            nak,
            false,
            Acked::ByHandler,
            None,
            Counted::FailedAfterAck,
            Kept::Always,
        ),
        (
            Action::Discard,
            false,
            Acked::First,
            None,
            Counted::Discarded,
            Kept::Always,
        ),
    ];
    for (action, reads, acked, letter, counted, kept) in rows {
        let plan = settlement_after(*action, *reads, *acked);
        let want = Settlement {
            letter: *letter,
            answer: Answer::Already,
            counted: *counted,
            kept: *kept,
            leaves: true,
        };
        assert_eq!(
            plan, want,
            "{action:?} acked {acked:?}, reads dead letters {reads}"
        );
    }
    assert_eq!(
        settlement_after(nak, false, Acked::No),
        settlement(nak, false)
    );
}

#[test]
fn every_row_of_the_settlement_table() {
    let d = Duration::from_secs(3);
    let r = DlqReason::Permanent;
    type Row = (Action, bool, Option<DlqReason>, Answer, Counted, Kept, bool);
    let rows: &[Row] = &[
        (
            Action::Ack,
            false,
            None,
            Answer::Ack,
            Counted::Acked,
            Kept::IfUsed,
            true,
        ),
        (
            Action::Ack,
            true,
            None,
            Answer::Ack,
            Counted::Acked,
            Kept::IfUsed,
            true,
        ),
        (
            Action::Nak { delay: d },
            false,
            None,
            Answer::Nak(d),
            Counted::Retried,
            Kept::Stays,
            false,
        ),
        (
            Action::Nak { delay: d },
            true,
            None,
            Answer::Nak(d),
            Counted::Retried,
            Kept::Stays,
            false,
        ),
        (
            Action::Discard,
            false,
            None,
            Answer::Term,
            Counted::Discarded,
            Kept::Always,
            true,
        ),
        (
            Action::DeadLetter(r),
            false,
            Some(r),
            Answer::Term,
            Counted::DeadLettered(r),
            Kept::Always,
            true,
        ),
        (
            Action::DeadLetter(r),
            true,
            None,
            Answer::Term,
            Counted::GaveUp(r),
            Kept::Always,
            true,
        ),
    ];
    for (action, reads, letter, answer, counted, kept, leaves) in rows {
        assert_eq!(
            settlement(*action, *reads),
            Settlement {
                letter: *letter,
                answer: *answer,
                counted: *counted,
                kept: *kept,
                leaves: *leaves,
            },
            "{action:?}, reads dead letters: {reads}"
        );
    }
}

const S: fn(u64) -> Duration = Duration::from_secs;
static BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(30)];

#[test]
fn every_row_of_the_outcome_table() {
    let p = Policy {
        max_deliver: 3,
        backoff: &BACKOFF,
    };
    let nak = |s| Action::Nak { delay: S(s) };
    let dl = Action::DeadLetter;
    let rows: &[(Outcome, u32, Action)] = &[
        (Outcome::Ok, 1, Action::Ack),
        (Outcome::Ok, 3, Action::Ack),
        (Outcome::Transient, 1, nak(1)),
        (Outcome::Transient, 2, nak(30)),
        (Outcome::Transient, 3, dl(DlqReason::Exhausted)),
        (Outcome::Transient, 9, dl(DlqReason::Exhausted)),
        (Outcome::RetryAfter(S(7)), 1, nak(7)),
        (Outcome::RetryAfter(S(7)), 3, dl(DlqReason::Exhausted)),
        (Outcome::Permanent, 1, dl(DlqReason::Permanent)),
        (Outcome::Decode, 1, dl(DlqReason::Decode)),
        (Outcome::Panic, 1, nak(1)),
        (Outcome::Panic, 3, dl(DlqReason::Panic)),
        (Outcome::Timeout, 2, nak(30)),
        (Outcome::Timeout, 3, dl(DlqReason::Timeout)),
        (Outcome::Discard, 1, Action::Discard),
        (Outcome::Discard, 3, Action::Discard),
    ];
    for (outcome, attempt, want) in rows {
        assert_eq!(
            classify(outcome, *attempt, &p),
            *want,
            "{outcome:?} on attempt {attempt}"
        );
    }
}

#[test]
fn last_delay_repeats_and_empty_backoff_is_immediate() {
    let p = Policy {
        max_deliver: 10,
        backoff: &BACKOFF,
    };
    assert_eq!(p.delay(5), S(30));
    let none = Policy {
        max_deliver: 10,
        backoff: &[],
    };
    assert_eq!(
        classify(&Outcome::Transient, 1, &none),
        Action::Nak {
            delay: Duration::ZERO
        }
    );
}

#[test]
fn one_delivery_means_no_retry() {
    let p = Policy {
        max_deliver: 1,
        backoff: &[],
    };
    assert_eq!(
        classify(&Outcome::Transient, 1, &p),
        Action::DeadLetter(DlqReason::Exhausted)
    );
    assert_eq!(
        classify(&Outcome::Panic, 1, &p),
        Action::DeadLetter(DlqReason::Panic)
    );
}

#[test]
fn reasons_round_trip() {
    for r in [
        DlqReason::Permanent,
        DlqReason::Decode,
        DlqReason::Exhausted,
        DlqReason::Panic,
        DlqReason::Timeout,
    ] {
        assert_eq!(r.as_str().parse::<DlqReason>(), Ok(r));
    }
    assert!("nope".parse::<DlqReason>().is_err());
}

#[test]
fn a_pause_without_room_is_a_retry_that_spends_a_run() {
    let d = Duration::from_secs(5);
    assert_eq!(counted(Outcome::Pause(d), true), Outcome::Pause(d));
    assert_eq!(counted(Outcome::Pause(d), false), Outcome::RetryAfter(d));
    assert_eq!(counted(Outcome::Transient, false), Outcome::Transient);
    let policy = Policy {
        max_deliver: 2,
        backoff: &[],
    };
    let paused = settlement(classify(&Outcome::Pause(d), 2, &policy), false);
    assert_eq!(
        (paused.answer, paused.counted, paused.kept, paused.leaves),
        (Answer::Nak(d), Counted::Paused, Kept::Stays, false)
    );
    // Acknowledged before it ended, a pause cannot wait.
    let after = settlement_after(Action::Pause { delay: d }, false, Acked::ByHandler);
    assert_eq!(after.counted, Counted::FailedAfterAck);
}

#[test]
fn a_continued_call_is_done_and_goes_on_acked_or_not() {
    let policy = Policy {
        max_deliver: 1,
        backoff: &[],
    };
    assert_eq!(classify(&Outcome::Continue, 1, &policy), Action::Continue);
    let plan = settlement(Action::Continue, false);
    assert_eq!(
        (
            plan.letter,
            plan.answer,
            plan.counted,
            plan.kept,
            plan.leaves
        ),
        (None, Answer::Ack, Counted::Continued, Kept::IfUsed, true)
    );
    for acked in [Acked::First, Acked::ByHandler] {
        let after = settlement_after(Action::Continue, false, acked);
        assert_eq!(
            (after.answer, after.counted, after.kept),
            (Answer::Already, Counted::Continued, Kept::IfUsed)
        );
    }
}
