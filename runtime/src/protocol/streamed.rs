//! Where a call's streamed output goes: the deployment's key-value bucket
//! `JETWIRE_OUTPUT`, a key per chunk, `<message id>.<handler>.<delivery>.<n>`,
//! and `<message id>.<handler>.<delivery>.end` once that delivery is
//! settled, saying whether another follows. The keys of one message and
//! handler come in the order they were written, so a reader watching them
//! from the start sees every delivery's chunks in order, then its end.
//! Output ages out with the bucket's `max_age`.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::error::Error;
use crate::names;
use crate::protocol::kept::Kept;

/// The largest chunk, in bytes.
pub(crate) const MAX_CHUNK: usize = 512 * 1024;
/// The value of an end after which no delivery follows.
const LAST: &[u8] = b"last";
/// The value of an end after which the message is delivered again.
const AGAIN: &[u8] = b"again";

/// Writing streamed output.
pub(crate) trait Streamed: Send + Sync + 'static {
    fn put(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<(), Error>>;
}

/// One item of a message's streamed output, as a reader sees it:
/// [`Publisher::follow_output`](crate::Publisher::follow_output) and
/// [`TestApp::output`](crate::testing::TestApp::output).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// A chunk the handler streamed with
    /// [`Context::stream_output`](crate::Context::stream_output), in order.
    Chunk {
        /// The delivery whose call streamed it (1 for the first; every
        /// redelivery, a retry or a pause, starts over with its own).
        delivery: u32,
        /// The chunk's bytes, as its codec wrote them (JSON by default).
        payload: Bytes,
    },
    /// The call of `delivery` ended and was settled.
    End {
        /// The delivery that ended.
        delivery: u32,
        /// No delivery follows: the message was acked, dead-lettered,
        /// discarded or continued. Otherwise it runs again (a retry, a
        /// pause), and streams anew.
        last: bool,
    },
}

/// The keys of `message_id`'s output from `handler`: what a reader
/// watches, with `.>` after it.
pub(crate) fn keys(message_id: &str, handler: &str) -> String {
    format!(
        "{}.{}",
        names::key_part(message_id),
        names::key_part(handler)
    )
}

/// The key of chunk `n` of `delivery`.
pub(crate) fn chunk_key(keys: &str, delivery: u32, n: u32) -> String {
    format!("{keys}.{delivery}.{n}")
}

/// The key and value of `delivery`'s end.
pub(crate) fn end(keys: &str, delivery: u32, last: bool) -> (String, Bytes) {
    let value = if last { LAST } else { AGAIN };
    (format!("{keys}.{delivery}.end"), Bytes::from_static(value))
}

/// The item stored under `key` (one of [`keys`]'s, then
/// `.<delivery>.<n|end>`) with `value`; `None` for a key that is not one.
pub(crate) fn parse(keys: &str, key: &str, value: Bytes) -> Option<Output> {
    let tail = key.strip_prefix(keys)?.strip_prefix('.')?;
    let (delivery, what) = tail.split_once('.')?;
    let delivery = delivery.parse().ok()?;
    match what {
        "end" => Some(Output::End {
            delivery,
            last: value.as_ref() == LAST,
        }),
        n if n.parse::<u32>().is_ok() => Some(Output::Chunk {
            delivery,
            payload: value,
        }),
        _ => None,
    }
}

/// The live bucket, bound or made on first use.
pub(crate) struct Bucket(Kept);

impl Bucket {
    pub(crate) fn new(
        js: jetstream::Context,
        prefix: Option<&str>,
        create: Option<(usize, jetstream::stream::StorageType)>,
    ) -> Bucket {
        let name = names::output_bucket(prefix);
        Bucket(Kept::new(
            js,
            name,
            "output streamed by handlers",
            MAX_CHUNK,
            create,
        ))
    }

    /// Every item under `keys` from the first, then each as it comes,
    /// until an end after which no delivery follows.
    pub(crate) async fn follow(
        &self,
        keys: String,
    ) -> Result<BoxStream<'static, Result<Output, Error>>, Error> {
        let store = self.0.store().await?;
        let watch = store
            .watch_with_history(format!("{keys}.>"))
            .await
            .map_err(|e| Error::nats("following streamed output", e))?;
        let items = watch.filter_map(move |entry| {
            let item = match entry {
                Ok(entry) if entry.operation == kv::Operation::Put => {
                    parse(&keys, &entry.key, entry.value).map(Ok)
                }
                Ok(_) => None,
                Err(e) => Some(Err(Error::nats("following streamed output", e))),
            };
            std::future::ready(item)
        });
        Ok(until_last(items.boxed()).boxed())
    }
}

/// `items` up to and with the first end after which nothing follows,
/// never waiting for another item after it.
pub(crate) fn until_last<S>(items: S) -> impl futures_util::Stream<Item = Result<Output, Error>>
where
    S: futures_util::Stream<Item = Result<Output, Error>> + Unpin,
{
    futures_util::stream::unfold((items, false), |(mut items, done)| async move {
        if done {
            return None;
        }
        let item = items.next().await?;
        let last = matches!(item, Ok(Output::End { last: true, .. }));
        Some((item, (items, last)))
    })
}

impl Streamed for Bucket {
    fn put(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.0.put(&key, value, "streaming output").await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_as_what_was_written() {
        let keys = keys("orders:7", "render");
        let chunk = parse(&keys, &chunk_key(&keys, 2, 5), Bytes::from_static(b"{}"));
        assert_eq!(
            chunk,
            Some(Output::Chunk {
                delivery: 2,
                payload: Bytes::from_static(b"{}")
            })
        );
        for last in [true, false] {
            let (key, value) = end(&keys, 3, last);
            assert_eq!(
                parse(&keys, &key, value),
                Some(Output::End { delivery: 3, last })
            );
        }
        // Another handler's keys, or keys of no shape, are no items.
        let other = super::keys("orders:7", "render2");
        assert_eq!(parse(&keys, &chunk_key(&other, 1, 0), Bytes::new()), None);
        for junk in ["x.1", "", "1", "1.end.2", "1.x"] {
            assert_eq!(parse(&keys, &format!("{keys}.{junk}"), Bytes::new()), None);
        }
    }
}
