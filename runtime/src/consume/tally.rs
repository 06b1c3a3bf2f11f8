//! Counting a delivery's runs ([`policy::runs`]) as the loop meets it:
//! read its record on a redelivery (and the marks of last runs begun, on
//! one that had every run it is allowed), mark a last run begun, record a
//! hand-back, and remove the record and the mark once the message is
//! settled.
//!
//! [`policy::runs`]: crate::policy::runs

use crate::consume::Shared;
use crate::handler::context::Context;
use crate::policy::runs::{self, Count, Record};
use crate::protocol::runs::RunKey;

/// What the loop knows of one delivery's record.
pub(super) struct Tally {
    key: RunKey,
    deliveries: u32,
    record: Record,
    /// Whether the record was read, so a hand-back need not read it again.
    read: bool,
    /// Whether the server may hold a record that settling must remove.
    kept: bool,
    /// Whether this delivery's last run was marked begun.
    began: bool,
}

impl Tally {
    /// The tally of a delivery: its record read if it is a redelivery.
    pub(super) async fn of(shared: &Shared, ctx: &Context) -> Tally {
        let meta = ctx.meta();
        let delivered = meta.delivered();
        let handbacks = &shared.binding.handbacks;
        let key = RunKey::new(
            (&handbacks.stream, &handbacks.durable),
            delivered.stream_sequence,
            delivered.published_at,
        );
        let read = runs::needs_record(delivered.deliveries);
        let runs = &handbacks.runs;
        let mut record = match read {
            true => runs.read(&key).await,
            false => Record::default(),
        };
        let kept = !record.is_empty();
        if runs::needs_marks(delivered.deliveries, record, ctx.max_deliver()) {
            record.last_begun = runs.any_began(&key).await;
        }
        Tally {
            key,
            deliveries: delivered.deliveries,
            kept,
            record,
            read,
            began: false,
        }
    }

    /// Decides on the delivery, and sets which run it is on its context.
    pub(super) fn count(&self, ctx: &Context) -> Count {
        let count = runs::count(self.deliveries, self.record, ctx.max_deliver());
        let attempt = match count {
            Count::Run { attempt } => attempt,
            // Its letter says it had every run it was allowed.
            Count::Exhausted => ctx.max_deliver(),
        };
        ctx.meta().count_attempt(attempt);
        count
    }

    /// Whether the message may pause once more without spending a run.
    pub(super) fn may_pause(&self) -> bool {
        runs::may_pause(self.record)
    }

    /// Just before the call starts: on its last allowed run, marks it
    /// begun, and waits for the server to store the mark, so that a process
    /// dying during the run ends in a dead letter rather than one run more.
    /// A mark that cannot be stored lets the run go ahead.
    pub(super) async fn begin(&mut self, shared: &Shared, ctx: &Context) {
        if ctx.attempt() < ctx.max_deliver() {
            return;
        }
        self.began = true;
        let delivered = ctx.meta().delivered();
        let at = delivered.published_at;
        shared.begun.begin(delivered.stream_sequence, at).await;
    }

    /// Records that the delivery goes back unrun, before its nak.
    pub(super) async fn hand_back(&mut self, shared: &Shared) {
        let known = self.read.then_some(self.record);
        let runs = &shared.binding.handbacks.runs;
        runs.note_hand_back(&self.key, self.deliveries, known).await;
    }

    /// Once the call is over and the message answered: removes its mark,
    /// and, if the message is `settled` (acked or terminated), its record.
    pub(super) fn ended(&self, shared: &Shared, settled: bool) {
        if self.began {
            shared.begun.end(self.key.sequence());
        }
        if settled && self.kept {
            shared.binding.handbacks.runs.forget(&self.key);
        }
    }
}
