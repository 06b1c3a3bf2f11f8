//! Workflow steps: a call that continues with its next input
//! ([`HandlerError::continue_with`]) and a call streaming partial results
//! ([`Context::stream_output`]). The live loop and `TestApp` both settle
//! through these.

use bytes::Bytes;

use crate::codecs::Encode;
use crate::error::{Error, HandlerError, Next, PublishError};
use crate::handler::context::Context;
use crate::protocol::streamed::{self, MAX_CHUNK};
use crate::publish::message::{self, PublishOptions};

impl Context {
    /// Publishes what the call continued with
    /// ([`HandlerError::continue_with`](crate::HandlerError::continue_with))
    /// to the subject this message came on, under an id derived from this
    /// message's, so that a redelivery publishes it once, with its key.
    pub(crate) async fn publish_next(&self, next: &Next) -> Result<(), PublishError> {
        let meta = self.meta();
        let id = next_id(meta.message_id(), &meta.durable);
        let mut options = PublishOptions::new().message_id(id);
        if let Some(key) = meta.headers.get(message::KEY) {
            options = options.key(key.as_str());
        }
        self.publish_with(self.subject(), next, options).await
    }

    /// Streams one chunk of this call's output: partial results, in
    /// order, for whoever follows the message with
    /// [`Publisher::follow_output`](crate::Publisher::follow_output) (or
    /// [`TestApp::output`](crate::testing::TestApp::output)). `chunk` is
    /// JSON, or a codec's wrapper; at most 512 KiB. Each chunk is stored
    /// before this returns. The chunks are tied to this delivery: once it
    /// is settled, its end is written, saying whether the message runs
    /// again (a retry or a pause streams anew) or not.
    ///
    /// ```
    /// use jetwire::{queue, Context, HandlerError};
    ///
    /// #[queue("queue.summarize")]
    /// async fn summarize(doc: String, ctx: Context) -> Result<(), HandlerError> {
    ///     for part in doc.split("\n\n") {
    ///         ctx.stream_output(&format!("{} words", part.split_whitespace().count())).await?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn stream_output<T: Encode + ?Sized>(&self, chunk: &T) -> Result<(), Error> {
        let (bytes, _) = chunk
            .encoded()
            .map_err(|e| Error::Output(format!("the chunk does not encode: {e}")))?;
        if bytes.len() > MAX_CHUNK {
            return Err(Error::Output(format!(
                "{} bytes is over the limit of {MAX_CHUNK} for one chunk: stream smaller ones",
                bytes.len()
            )));
        }
        let key = streamed::chunk_key(&self.output_keys(), self.delivery(), self.next_chunk());
        self.env().streamed.put(key, Bytes::from(bytes)).await
    }

    /// Once this delivery is settled: writes its end, if it streamed, and
    /// whether another delivery follows (`last` when the message leaves).
    pub(crate) async fn end_output(&self, last: bool) {
        if !self.streamed() {
            return;
        }
        let (key, value) = streamed::end(&self.output_keys(), self.delivery(), last);
        if let Err(e) = self.env().streamed.put(key, value).await {
            tracing::warn!(error = %e, "could not write the end of the streamed output; a reader waits for the next delivery's");
        }
    }

    fn output_keys(&self) -> String {
        streamed::keys(self.message_id(), self.handler())
    }

    fn delivery(&self) -> u32 {
        self.meta().delivered().deliveries
    }
}

impl HandlerError {
    /// Not a failure: this step is done and the work goes on as a new
    /// message. The message is acked, and `next` (JSON, or a codec's
    /// wrapper such as `MsgPack(next)`) is published to the subject it
    /// came on, so the same handler runs it with its runs counted afresh
    /// (continue-as-new): a long job in steps, each with its own
    /// `max_deliver`, none holding a growing history. The continuation is
    /// stored before the ack, under an id derived from this message's, so
    /// a redelivery after a crash in between publishes it once; it keeps
    /// the message's correlation id and key.
    ///
    /// For `#[queue]` handlers only (an event's subject reaches every
    /// app that subscribes): on a `#[subscribe]` handler the call is a
    /// permanent failure saying so. A `next` that does not encode is a
    /// permanent failure too.
    ///
    /// ```
    /// use jetwire::{queue, HandlerError};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Export { page: u32, pages: u32 }
    ///
    /// #[queue("queue.export")]
    /// async fn export(job: Export) -> Result<(), HandlerError> {
    ///     // export page `job.page` here
    ///     if job.page + 1 < job.pages {
    ///         return Err(HandlerError::continue_with(&Export { page: job.page + 1, ..job }));
    ///     }
    ///     Ok(())
    /// }
    /// assert!(HandlerError::continue_with(&Export { page: 1, pages: 3 }).continues());
    /// ```
    pub fn continue_with<T: Encode + ?Sized>(next: &T) -> Self {
        match next.encoded() {
            Ok((payload, content_type)) => HandlerError::continued(Next {
                payload: payload.into(),
                content_type,
            }),
            Err(e) => HandlerError::permanent(format!(
                "continue_with: the next input does not encode: {e}"
            )),
        }
    }
}

impl Encode for Next {
    fn encoded(&self) -> Result<(Vec<u8>, &'static str), crate::codecs::BoxError> {
        Ok((self.payload.to_vec(), self.content_type))
    }
}

/// The id of the step after message `id` of `durable`: `<id>:<durable>:next1`,
/// and for a step that was one itself, the same with its number one more,
/// so a chain of steps keeps ids of one length.
fn next_id(id: &str, durable: &str) -> String {
    let marker = format!(":{durable}:next");
    if let Some(at) = id.rfind(&marker) {
        let n = &id[at + marker.len()..];
        if let Ok(n) = n.parse::<u64>() {
            return format!("{}{marker}{}", &id[..at], n.saturating_add(1));
        }
    }
    format!("{id}{marker}1")
}

#[cfg(test)]
mod tests {
    #[test]
    fn step_ids_keep_their_length_along_a_chain() {
        let first = super::next_id("ORDERS:42", "export");
        assert_eq!(first, "ORDERS:42:export:next1");
        let second = super::next_id(&first, "export");
        assert_eq!(second, "ORDERS:42:export:next2");
        assert_eq!(
            super::next_id("a:export:nextx", "export"),
            "a:export:nextx:export:next1"
        );
    }
}
