//! Counting a delivery's runs ([`policy::runs`]) as the loop meets it:
//! read its record on a redelivery, mark a last run begun, record a
//! hand-back, and remove the record once the message is settled.
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
}

impl Tally {
    /// The tally of a delivery: its record read if it is a redelivery.
    pub(super) async fn of(shared: &Shared, ctx: &Context) -> Tally {
        let meta = ctx.meta();
        let delivered = meta.delivered();
        let key = RunKey::new(
            &meta.stream,
            &meta.durable,
            delivered.stream_sequence,
            delivered.published_at,
        );
        let read = runs::needs_record(delivered.deliveries);
        let record = match read {
            true => shared.binding.handbacks.runs.read(&key).await,
            false => Record::default(),
        };
        Tally {
            key,
            deliveries: delivered.deliveries,
            kept: !record.is_empty(),
            record,
            read,
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
        self.record.last_begun = true;
        self.kept = true;
        shared
            .binding
            .handbacks
            .runs
            .write(&self.key, self.record)
            .await;
    }

    /// Records that the delivery goes back unrun, before its nak.
    pub(super) async fn hand_back(&mut self, shared: &Shared) {
        let known = self.read.then_some(self.record);
        let runs = &shared.binding.handbacks.runs;
        runs.note_hand_back(&self.key, self.deliveries, known).await;
    }

    /// Once the message is acked or terminated: removes its record.
    pub(super) fn settled(&self, shared: &Shared) {
        if self.kept {
            shared.binding.handbacks.runs.forget(&self.key);
        }
    }
}
