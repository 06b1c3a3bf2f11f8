//! Many messages at once: [`Publisher::publish_batch`], a receipt for
//! each (publishes pipelined, in order), and [`Publisher::publish_fast`],
//! one receipt for all (the server's fast batch on NATS 2.14+, pipelined
//! publishes elsewhere).

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::iter::Peekable;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{BoxFuture, FutureExt};

use crate::error::PublishError;
use crate::observe::metrics;
use crate::protocol::fast::{self, Answer, Op};
use crate::protocol::version;
use crate::publish::message::Message;
use crate::publish::outlet::{JetStreamOutlet, Receipt};
use crate::publish::publisher::Publisher;

/// How many publishes [`Publisher::publish_batch`] keeps unconfirmed.
const WINDOW: usize = 256;
/// How long the server's next answer to a fast batch may take before it
/// is asked for again, once; then the batch is given up.
const PATIENCE: Duration = Duration::from_secs(5);
/// How many flow acks a fast batch may run ahead of.
const OUTSTANDING: u64 = 4;

/// What JetStream stored of a batch sent with [`Publisher::publish_fast`].
///
/// ```no_run
/// # async fn demo(publisher: jetwire::Publisher) -> Result<(), Box<dyn std::error::Error>> {
/// use jetwire::publish::Message;
/// let messages = (0..10_000u32)
///     .map(|n| Message::json("metrics.sample", &n, Default::default()))
///     .collect::<Result<Vec<_>, _>>()?;
/// let receipt = publisher.publish_fast(messages).await?;
/// assert_eq!(receipt.count, 10_000);
/// println!("the last is #{} of {}", receipt.last_sequence, receipt.stream);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchReceipt {
    /// The stream that stored the batch (empty for an empty batch).
    pub stream: String,
    /// How many messages it holds: all that were sent, a message id the
    /// stream had already stored counting as stored.
    pub count: u64,
    /// The stream sequence of the last message stored.
    pub last_sequence: u64,
}

/// A batch that stopped at message `index` (counted from 0): every
/// message before it is stored. Where the server refused or missed a
/// message of a fast batch, nothing from `index` on is stored; after a
/// lost connection, or from [`Publisher::publish_batch`], some later
/// messages may be. Sending the messages from `index` on again, under the
/// same message ids, stores each message once.
#[derive(Debug, thiserror::Error)]
#[error("message {index} of the batch was not stored (every one before it was): {error}")]
#[non_exhaustive]
pub struct BatchError {
    /// The first message not known to be stored.
    pub index: usize,
    /// Why.
    #[source]
    pub error: PublishError,
}

type Confirming = (usize, BoxFuture<'static, Result<Receipt, PublishError>>);

impl Publisher {
    /// Publishes `messages` in order, up to 256 unconfirmed at once, and
    /// returns a receipt for each, in order; or where the batch stopped:
    /// every message before [`BatchError::index`] is stored (later ones
    /// may be too). For the most messages a second with one receipt for
    /// all, see [`Publisher::publish_fast`].
    ///
    /// ```no_run
    /// # async fn demo(publisher: jetwire::Publisher) -> Result<(), Box<dyn std::error::Error>> {
    /// use jetwire::{publish::Message, PublishOptions};
    /// let orders = [1, 2, 3].map(|id| {
    ///     Message::json("orders.created", &id, PublishOptions::new().message_id(format!("order-{id}")))
    /// });
    /// let receipts = publisher.publish_batch(orders.into_iter().collect::<Result<Vec<_>, _>>()?).await?;
    /// assert!(receipts.windows(2).all(|r| r[0].sequence < r[1].sequence));
    /// # Ok(()) }
    /// ```
    pub async fn publish_batch(
        &self,
        messages: impl IntoIterator<Item = Message>,
    ) -> Result<Vec<Receipt>, BatchError> {
        let mut receipts = Vec::new();
        self.pipelined(messages, 0, |r| receipts.push(r)).await?;
        Ok(receipts)
    }

    /// Publishes `messages`, in order, all to one stream, at the server's
    /// pace: on NATS 2.14+ and a stream that allows fast batches (every
    /// stream jetwire creates there does), as the server's fast batch,
    /// which confirms every few hundred messages instead of each one;
    /// elsewhere (an older server, `allow_batched` off, `memory://`) as
    /// [`Publisher::publish_batch`] does. Returns what was stored, or where
    /// the batch stopped ([`BatchError`]).
    ///
    /// A fast batch tells only the sequence of its last message; for each
    /// message's, use [`Publisher::publish_batch`].
    pub async fn publish_fast(
        &self,
        messages: impl IntoIterator<Item = Message>,
    ) -> Result<BatchReceipt, BatchError> {
        let mut messages = messages.into_iter().peekable();
        let mut done = BatchReceipt {
            stream: String::new(),
            count: 0,
            last_sequence: 0,
        };
        let Some((outlet, client)) = self.on_nats() else {
            return self.summed(messages, done).await;
        };
        if !version::at_least(&client.server_info().version, (2, 14)) {
            return self.summed(messages, done).await;
        }
        while let Some(first) = messages.next() {
            let offset = done.count as usize;
            let batch = FastBatch::open(outlet, client, offset).await?;
            match batch.run(first, &mut messages).await? {
                Ended::Committed(part) => {
                    done.count += part.count;
                    done.last_sequence = part.last_sequence;
                    done.stream = part.stream;
                }
                Ended::NotEnabled(first) => {
                    let rest = std::iter::once(first).chain(messages);
                    return self.summed(rest.peekable(), done).await;
                }
            }
        }
        Ok(done)
    }

    /// [`Publisher::publish_batch`], adding what is stored to `done`.
    async fn summed(
        &self,
        messages: impl Iterator<Item = Message>,
        mut done: BatchReceipt,
    ) -> Result<BatchReceipt, BatchError> {
        let offset = done.count as usize;
        self.pipelined(messages, offset, |r| {
            done.count += 1;
            done.last_sequence = r.sequence;
            done.stream = r.stream;
        })
        .await?;
        Ok(done)
    }

    /// Sends `messages` with up to [`WINDOW`] unconfirmed, handing each
    /// receipt to `stored` in order; indexes in errors start at `offset`.
    async fn pipelined(
        &self,
        messages: impl IntoIterator<Item = Message>,
        offset: usize,
        mut stored: impl FnMut(Receipt),
    ) -> Result<(), BatchError> {
        let mut unconfirmed: VecDeque<Confirming> = VecDeque::new();
        for (n, message) in messages.into_iter().enumerate() {
            if unconfirmed.len() == WINDOW {
                confirm_first(&mut unconfirmed, &mut stored).await?;
            }
            match self.pending(message).await {
                Ok(receipt) => unconfirmed.push_back((offset + n, receipt.into_future())),
                Err(error) => {
                    while !unconfirmed.is_empty() {
                        confirm_first(&mut unconfirmed, &mut stored).await?;
                    }
                    return Err(BatchError {
                        index: offset + n,
                        error,
                    });
                }
            }
        }
        while !unconfirmed.is_empty() {
            confirm_first(&mut unconfirmed, &mut stored).await?;
        }
        Ok(())
    }
}

/// Awaits the oldest unconfirmed publish.
async fn confirm_first(
    unconfirmed: &mut VecDeque<Confirming>,
    stored: &mut impl FnMut(Receipt),
) -> Result<(), BatchError> {
    let Some((index, receipt)) = unconfirmed.pop_front() else {
        return Ok(());
    };
    stored(receipt.await.map_err(|error| BatchError { index, error })?);
    Ok(())
}

/// How one fast batch ended.
enum Ended {
    /// Committed: what it stored.
    Committed(BatchReceipt),
    /// The stream does not take fast batches; its first message, not stored.
    NotEnabled(Message),
}

/// One fast batch on the wire: its inbox, and what the server has said.
struct FastBatch<'a> {
    outlet: &'a JetStreamOutlet,
    client: &'a async_nats::Client,
    answers: async_nats::Subscriber,
    inbox: String,
    id: String,
    /// The index, in the whole call, of the batch's first message.
    offset: usize,
    /// The subject (as the server has it) of the first message: pings and
    /// the end of a failed batch go there, to the batch's stream.
    first_subject: String,
    /// Messages sent, and acked as stored.
    sent: u64,
    acked: u64,
    /// The server's flow: an ack every this many messages.
    flow: u64,
    /// The subjects of the messages sent and not yet acked, for errors.
    subjects: VecDeque<String>,
    /// The first message that failed, and why.
    failed: Option<(u64, PublishError)>,
    /// How many refusals the server sent.
    refusals: u32,
    committed: Option<BatchReceipt>,
}

impl<'a> FastBatch<'a> {
    async fn open(
        outlet: &'a JetStreamOutlet,
        client: &'a async_nats::Client,
        offset: usize,
    ) -> Result<FastBatch<'a>, BatchError> {
        let inbox = client.new_inbox();
        let answers = client
            .subscribe(format!("{inbox}.>"))
            .await
            .map_err(|e| BatchError {
                index: offset,
                error: PublishError::Send {
                    subject: inbox.clone(),
                    source: Box::new(e),
                },
            })?;
        Ok(FastBatch {
            outlet,
            client,
            answers,
            inbox,
            id: uuid::Uuid::now_v7().simple().to_string(),
            offset,
            first_subject: String::new(),
            sent: 0,
            acked: 0,
            flow: 1,
            subjects: VecDeque::new(),
            failed: None,
            refusals: 0,
            committed: None,
        })
    }

    /// Sends `first` and every message of `messages` (or those up to a
    /// failure) and waits for the commit.
    async fn run(
        mut self,
        first: Message,
        messages: &mut Peekable<impl Iterator<Item = Message>>,
    ) -> Result<Ended, BatchError> {
        self.first_subject = self
            .outlet
            .route(&first)
            .await
            .map_err(|e| self.error(0, e))?;
        let op = if messages.peek().is_some() {
            Op::Start
        } else {
            Op::Commit
        };
        self.send(self.first_subject.clone(), first.clone(), op)
            .await?;
        // The first answer says whether the stream takes fast batches.
        match self.answer().await {
            Some(Answer::Refused {
                code: Some(fast::NOT_ENABLED),
                ..
            }) => {
                return Ok(Ended::NotEnabled(first));
            }
            Some(answer) => self.take(answer),
            None => self.no_answer(),
        }
        if let Some(part) = self.committed.take() {
            // One message, or a first message the stream had stored
            // already, which ends a batch at once.
            return Ok(Ended::Committed(part));
        }
        while self.failed.is_none() {
            let Some(message) = messages.next() else {
                break;
            };
            while let Some(Some(m)) = self.answers.next().now_or_never() {
                self.take(fast::read(&m.subject, &m.payload));
            }
            while self.failed.is_none() && self.sent - self.acked >= self.flow * OUTSTANDING {
                self.wait().await;
            }
            if self.failed.is_some() {
                break;
            }
            let subject = self
                .outlet
                .route(&message)
                .await
                .map_err(|e| self.error(self.sent, e))?;
            let op = if messages.peek().is_some() {
                Op::Append
            } else {
                Op::Commit
            };
            self.send(subject, message, op).await?;
        }
        self.commit_seen().await;
        self.finish()
    }

    /// Waits for the commit's ack. After a failure, first ends the batch
    /// before the failed message (if the server has not already), and
    /// stops at the server's answer to that.
    async fn commit_seen(&mut self) {
        let mut ended = None;
        while self.committed.is_none() {
            if let (Some((seq, _)), None) = (&self.failed, ended) {
                if *seq <= 1 {
                    return;
                }
                self.control(*seq, Op::CommitEob).await;
                ended = Some(self.refusals);
            }
            if ended.is_some_and(|at| self.refusals > at) || !self.wait().await {
                return;
            }
        }
    }

    /// What the batch ended with.
    fn finish(mut self) -> Result<Ended, BatchError> {
        let committed = self.committed.take();
        let stored = committed.as_ref().map_or(self.acked, |c| c.count);
        if let Some((_, error)) = self.failed.take() {
            return Err(self.error(stored, error));
        }
        match committed {
            Some(part) if part.count == self.sent => {
                metrics::published_many(&part.stream, part.count);
                Ok(Ended::Committed(part))
            }
            _ => {
                let subject = self.subject_of(stored + 1);
                Err(self.error(
                    stored,
                    PublishError::Ack {
                        subject,
                        source: format!(
                            "the server confirmed {stored} of {} messages of a fast batch",
                            self.sent
                        )
                        .into(),
                    },
                ))
            }
        }
    }

    async fn send(&mut self, subject: String, message: Message, op: Op) -> Result<(), BatchError> {
        self.sent += 1;
        let reply = fast::reply(&self.inbox, &self.id, self.sent, op);
        self.client
            .publish_with_reply_and_headers(subject, reply, message.headers, message.payload)
            .await
            .map_err(|e| {
                self.error(
                    self.sent - 1,
                    PublishError::Send {
                        subject: message.subject.clone(),
                        source: Box::new(e),
                    },
                )
            })?;
        self.subjects.push_back(message.subject);
        Ok(())
    }

    /// Sends an empty message that only speaks to the batch (a ping, an
    /// end), to its stream. Best effort: a lost one shows as no answer.
    async fn control(&self, seq: u64, op: Op) {
        let reply = fast::reply(&self.inbox, &self.id, seq, op);
        let _ = self
            .client
            .publish_with_reply(self.first_subject.clone(), reply, Default::default())
            .await;
    }

    /// Waits for the next answer and reads it; whether one came.
    async fn wait(&mut self) -> bool {
        match self.answer().await {
            Some(answer) => {
                self.take(answer);
                true
            }
            None => {
                self.no_answer();
                false
            }
        }
    }

    /// The next answer: asked for again once if it is slow; `None` if it
    /// never comes.
    async fn answer(&mut self) -> Option<Answer> {
        for ask in [false, true] {
            if ask {
                self.control(self.sent, Op::Ping).await;
            }
            if let Ok(Some(m)) = tokio::time::timeout(PATIENCE, self.answers.next()).await {
                return Some(fast::read(&m.subject, &m.payload));
            }
        }
        None
    }

    /// Takes in one answer.
    fn take(&mut self, answer: Answer) {
        match answer {
            Answer::Flow { seq, msgs } => {
                while self.acked < seq.min(self.sent) {
                    self.acked += 1;
                    self.subjects.pop_front();
                }
                self.flow = u64::from(msgs.max(1));
            }
            Answer::Gap { expected } => {
                let subject = self.subject_of(expected);
                self.fail(
                    expected,
                    PublishError::Ack {
                        subject,
                        source: "the server did not receive it (a gap in the fast batch)".into(),
                    },
                );
            }
            Answer::Refused {
                seq,
                code,
                description,
            } => {
                self.refusals += 1;
                let seq = seq.unwrap_or(self.acked + 1);
                let subject = self.subject_of(seq);
                self.fail(
                    seq,
                    PublishError::Refused {
                        subject,
                        code,
                        reason: description,
                    },
                );
            }
            Answer::Committed {
                stream,
                sequence,
                count,
            } => {
                self.acked = self.acked.max(count.min(self.sent));
                self.committed = Some(BatchReceipt {
                    stream,
                    count,
                    last_sequence: sequence,
                });
            }
            Answer::Unreadable => {
                tracing::debug!("an answer to a fast batch that does not read as one; ignored");
            }
        }
    }

    fn no_answer(&mut self) {
        let seq = self.acked + 1;
        let subject = self.subject_of(seq);
        self.fail(
            seq,
            PublishError::Ack {
                subject,
                source: format!("no answer from the server in {} s", 2 * PATIENCE.as_secs()).into(),
            },
        );
    }

    /// Keeps the first failure.
    fn fail(&mut self, seq: u64, error: PublishError) {
        if self.failed.as_ref().is_none_or(|(s, _)| seq < *s) {
            self.failed = Some((seq, error));
        }
    }

    /// The subject (as the caller gave it) of batch message `seq`.
    fn subject_of(&self, seq: u64) -> String {
        let at = seq.saturating_sub(self.acked + 1);
        usize::try_from(at)
            .ok()
            .and_then(|at| self.subjects.get(at))
            .cloned()
            .unwrap_or_else(|| "the batch".to_owned())
    }

    /// An error at batch message `stored` (counted from 0).
    fn error(&self, stored: u64, error: PublishError) -> BatchError {
        BatchError {
            index: self.offset + usize::try_from(stored).unwrap_or(usize::MAX),
            error,
        }
    }
}
