//! [`DeadLetters`]: list, read, replay and purge the letters of the
//! deployment's dead-letter stream. Letters are read one at a time, in
//! stream order, with the server skipping what the subject filter leaves
//! out: memory stays bounded by the page asked for, whatever the DLQ holds.

use std::time::SystemTime;

use async_nats::jetstream::{self, stream::RawMessageErrorKind};
use jetwire_grammar::subject::with_prefix;

use crate::config::Config;
use crate::dlq::view::{self, DeadLetter, Filter};
use crate::error::Error;
use crate::names;
use crate::publish::{MSG_ID, Message, Publisher, Receipt};

/// `Jetwire-Replayed-From`: on a replayed message, the sequence of the
/// letter it came from.
pub const REPLAYED_FROM: &str = "Jetwire-Replayed-From";

/// The dead letters of a deployment (its subject prefix), as an operation.
///
/// ```no_run
/// # async fn demo() -> Result<(), jetwire::Error> {
/// use jetwire::DlqReason;
/// use jetwire::dlq::{DeadLetters, Filter};
///
/// let dlq = DeadLetters::connect(&jetwire::Config::from_env()?).await?;
/// for letter in dlq.list(&Filter::new().reason(DlqReason::Decode).limit(20)).await? {
///     println!("#{} {} {:?}", letter.sequence(), letter.subject(), letter.error());
/// }
/// let replayed = dlq.replay_all(&Filter::new().handler("send_email")).await?; // after the fix
/// # let _ = replayed; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct DeadLetters {
    publisher: Publisher,
    stream: String,
    prefix: Option<String>,
}

impl DeadLetters {
    /// Connects with `config`.
    pub async fn connect(config: &Config) -> Result<DeadLetters, Error> {
        Ok(DeadLetters::on(Publisher::connect(config).await?))
    }

    /// The dead letters of `publisher`'s deployment, on its connection.
    pub fn on(publisher: Publisher) -> DeadLetters {
        let prefix = publisher.config().prefix().map(str::to_owned);
        DeadLetters {
            stream: names::dlq_stream(prefix.as_deref()),
            publisher,
            prefix,
        }
    }

    /// How many letters the dead-letter stream holds, and its last sequence.
    pub async fn count(&self) -> Result<(u64, u64), Error> {
        let mut stream = self.stream().await?;
        let info = stream
            .info()
            .await
            .map_err(|e| Error::nats("reading the dead-letter stream's state", e))?;
        Ok((info.state.messages, info.state.last_sequence))
    }

    /// The dead-letter stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    fn js(&self) -> Result<&jetstream::Context, Error> {
        Ok(self.publisher.parts("dead-letter operations")?.0)
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream, Error> {
        self.js()?
            .get_stream(&self.stream)
            .await
            .map_err(|e| Error::Stream {
                stream: self.stream.clone(),
                reason: format!("cannot read the dead-letter stream: {e}"),
            })
    }

    /// The letter subject `filter` reads: `dlq.<subject>`, or all.
    fn letter_subject(&self, filter: &Filter) -> String {
        let within = match &filter.subject {
            Some(s) => names::dlq_subject(s),
            None => format!("{}.>", jetwire_grammar::subject::DLQ_TOKEN),
        };
        with_prefix(self.prefix.as_deref(), &within)
    }

    fn view(&self, m: jetstream::message::StreamMessage) -> DeadLetter {
        DeadLetter {
            sequence: m.sequence,
            subject: view::original_subject(self.prefix.as_deref(), m.subject.as_str()),
            headers: m.headers,
            payload: m.payload,
            stored_at: SystemTime::from(m.time),
        }
    }

    /// The first letter at or after `sequence` on `subject`; none past the end.
    async fn next(
        &self,
        stream: &jetstream::stream::Stream,
        sequence: u64,
        subject: &str,
    ) -> Result<Option<DeadLetter>, Error> {
        let got = stream
            .raw_message_builder()
            .sequence(sequence.max(1))
            .next_by_subject(subject)
            .send()
            .await;
        match got {
            Ok(m) => Ok(Some(self.view(m))),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(Error::nats(
                format!("reading {} from #{sequence}", self.stream),
                e,
            )),
        }
    }

    /// The first sequence stored at or after `since`: a binary search, a
    /// few reads whatever the stream holds.
    async fn first_since(
        &self,
        stream: &jetstream::stream::Stream,
        since: SystemTime,
        subject: &str,
    ) -> Result<u64, Error> {
        let mut info = stream.clone();
        let state = &info
            .info()
            .await
            .map_err(|e| Error::nats("reading the dead-letter stream's state", e))?
            .state;
        let (mut lo, mut hi) = (state.first_sequence.max(1), state.last_sequence + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.next(stream, mid, subject).await? {
                Some(l) if l.stored_at < since => lo = l.sequence + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }

    /// Calls `visit` with each letter `filter` admits, oldest first, up to
    /// its limit; `visit` says whether to go on. Only letters stored when
    /// the scan began are visited: a letter written meanwhile (one a
    /// replay dead-lettered again, say) has a higher sequence than the
    /// stream's last one read at the start, so every scan ends, and touches
    /// nothing the caller could not have seen.
    async fn scan(
        &self,
        filter: &Filter,
        mut visit: impl AsyncFnMut(&jetstream::stream::Stream, DeadLetter) -> Result<bool, Error>,
    ) -> Result<usize, Error> {
        let filter = &filter.at(self.publisher.config().clock().now());
        let stream = self.stream().await?;
        let last = stream
            .clone()
            .info()
            .await
            .map_err(|e| Error::nats("reading the dead-letter stream's state", e))?
            .state
            .last_sequence;
        let end = filter.up_to.map_or(last, |u| u.min(last));
        let subject = self.letter_subject(filter);
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut seen = 0;
        if let Some(seqs) = &filter.sequences {
            let within = |seq: u64| filter.from.is_none_or(|f| seq >= f) && seq <= end;
            for seq in seqs.iter().copied().filter(|s| within(*s)) {
                if seen >= limit {
                    break;
                }
                let letter = self.get_on(&stream, seq).await?;
                if filter.admits(&letter) {
                    seen += 1;
                    if !visit(&stream, letter).await? {
                        break;
                    }
                }
            }
            return Ok(seen);
        }
        let mut at = match filter.since {
            Some(since) => self.first_since(&stream, since, &subject).await?,
            None => 1,
        }
        .max(filter.from.unwrap_or(1));
        while seen < limit && at <= end {
            let Some(letter) = self.next(&stream, at, &subject).await? else {
                break;
            };
            if letter.sequence > end {
                break;
            }
            at = letter.sequence + 1;
            if filter.admits(&letter) {
                seen += 1;
                if !visit(&stream, letter).await? {
                    break;
                }
            }
        }
        Ok(seen)
    }

    /// Calls `visit` with each letter `filter` admits, oldest first, as
    /// [`DeadLetters::list`] would list them, holding one at a time:
    /// memory stays bounded whatever the dead-letter stream holds.
    /// `visit` says whether to go on; how many it was called with.
    ///
    /// ```no_run
    /// # async fn demo(dlq: jetwire::dlq::DeadLetters) -> Result<(), jetwire::Error> {
    /// use jetwire::dlq::Filter;
    /// let mut bytes = 0;
    /// let n = dlq.each(&Filter::new().handler("send_email"), |l| { bytes += l.payload().len(); true }).await?;
    /// println!("{n} letters, {bytes} bytes of payload");
    /// # Ok(()) }
    /// ```
    pub async fn each(
        &self,
        filter: &Filter,
        mut visit: impl FnMut(DeadLetter) -> bool,
    ) -> Result<usize, Error> {
        self.scan(filter, async |_, letter| Ok(visit(letter))).await
    }

    /// The letters `filter` admits, oldest first, at most its limit.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<DeadLetter>, Error> {
        let mut out = Vec::new();
        self.scan(filter, async |_, letter| {
            out.push(letter);
            Ok(true)
        })
        .await?;
        Ok(out)
    }

    async fn get_on(
        &self,
        stream: &jetstream::stream::Stream,
        seq: u64,
    ) -> Result<DeadLetter, Error> {
        let missing = |why: String| Error::DeadLetter {
            sequence: seq,
            reason: why,
        };
        let m = stream
            .get_raw_message(seq)
            .await
            .map_err(|e| match e.kind() {
                RawMessageErrorKind::NoMessageFound => missing(format!(
                    "no such letter in {}: list them with `jetwire dlq ls`",
                    self.stream
                )),
                _ => missing(format!("cannot read it: {e}")),
            })?;
        Ok(self.view(m))
    }

    /// The letter at sequence `seq` of the dead-letter stream.
    pub async fn get(&self, seq: u64) -> Result<DeadLetter, Error> {
        let stream = self.stream().await?;
        self.get_on(&stream, seq).await
    }

    /// Sends letter `seq` back to its original subject (see
    /// [`DeadLetters`]), then deletes it. The message id is
    /// `replay:<dlq stream>:<seq>:<stored>` (the letter's stored time in
    /// nanoseconds), so a replay repeated within the duplicate window is
    /// stored once, and a letter of a dead-letter stream made again is
    /// never taken for an older one's replay. A replay that fails (no stream
    /// captures the subject, the server refuses it) leaves the letter.
    pub async fn replay(&self, seq: u64) -> Result<Receipt, Error> {
        let stream = self.stream().await?;
        let letter = self.get_on(&stream, seq).await?;
        self.replay_letter(&stream, letter).await
    }

    async fn replay_letter(
        &self,
        stream: &jetstream::stream::Stream,
        letter: DeadLetter,
    ) -> Result<Receipt, Error> {
        let seq = letter.sequence;
        let failed = |why: String| Error::DeadLetter {
            sequence: seq,
            reason: why,
        };
        let mut headers = letter.original_headers();
        // The letter's stored time tells this letter from one at the same
        // sequence of a dead-letter stream made again.
        let stored = crate::dlq::letter::unix_nanos(letter.stored_at);
        headers.insert(MSG_ID, format!("replay:{}:{seq}:{stored}", self.stream));
        headers.insert(REPLAYED_FROM, seq.to_string());
        // A replay of a replay keeps the first original's id.
        let replayed_id = crate::publish::message::REPLAYED_ID;
        if headers.get(replayed_id).is_none()
            && let Some(original) = letter.message_id()
        {
            headers.insert(replayed_id, original);
        }
        let message = Message::from_parts(&letter.subject, headers, letter.payload.clone())
            .map_err(|e| failed(format!("cannot replay it: {e}")))?;
        let receipt = self
            .publisher
            .publish_message(message)
            .await
            .map_err(|e| failed(format!("not replayed, and kept: {e}")))?;
        stream.delete_message(seq).await.map_err(|e| {
            failed(format!(
                "replayed into {} #{}, but the letter could not be deleted: {e}; replaying it again within the duplicate window stores nothing new",
                receipt.stream, receipt.sequence
            ))
        })?;
        Ok(receipt)
    }

    /// Replays every letter `filter` admits that was stored when the call
    /// began; how many were replayed. A replayed message that fails again
    /// becomes a new letter, which this call leaves alone. Stops at the
    /// first replay that fails, which stays with the rest.
    pub async fn replay_all(&self, filter: &Filter) -> Result<u64, Error> {
        let mut done = 0;
        self.scan(filter, async |stream, letter| {
            self.replay_letter(stream, letter).await?;
            done += 1;
            Ok(true)
        })
        .await?;
        Ok(done)
    }

    /// Deletes every letter `filter` admits that was stored when the call
    /// began; how many. Letters that arrive while it runs stay.
    pub async fn purge(&self, filter: &Filter) -> Result<u64, Error> {
        let mut done = 0;
        self.scan(filter, async |stream, letter| {
            let deleted =
                stream
                    .delete_message(letter.sequence)
                    .await
                    .map_err(|e| Error::DeadLetter {
                        sequence: letter.sequence,
                        reason: format!("cannot delete it: {e}"),
                    })?;
            done += u64::from(deleted);
            Ok(true)
        })
        .await?;
        Ok(done)
    }
}
