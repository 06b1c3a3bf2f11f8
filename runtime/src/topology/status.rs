//! [`status`]: the state of every stream and durable jetwire made or
//! reads, and the dead letters per reason and handler, from code; what
//! `jetwire status` prints.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_nats::jetstream;
use futures_util::TryStreamExt;

use crate::config::Config;
use crate::dlq::{DeadLetters, Filter};
use crate::error::Error;
use crate::names::{self, Owner};
use crate::publish::Publisher;

/// Letters read at most to count them per reason and handler: the latest.
const LETTERS_COUNTED: usize = 10_000;

/// What [`status`] found.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Status {
    /// Each stream of the deployment, by name.
    pub streams: Vec<StreamStatus>,
    /// The dead-letter stream, counted.
    pub dead_letters: LetterCounts,
}

/// One stream.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StreamStatus {
    /// Its name.
    pub name: String,
    /// The subjects it captures.
    pub subjects: Vec<String>,
    /// Messages it holds.
    pub messages: u64,
    /// Bytes it holds.
    pub bytes: u64,
    /// Its durable consumers.
    pub consumers: Vec<ConsumerStatus>,
}

/// One durable consumer.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConsumerStatus {
    /// Its name.
    pub name: String,
    /// Messages not yet delivered to it.
    pub pending: u64,
    /// Messages delivered and not yet acked.
    pub ack_pending: u64,
    /// Messages delivered more than once, not yet acked.
    pub redelivered: u64,
    /// Pull requests waiting at the server.
    pub waiting: u64,
    /// When it last delivered a message.
    pub last_active: Option<SystemTime>,
}

/// The dead letters, counted.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LetterCounts {
    /// Letters in the stream.
    pub total: u64,
    /// Letters read to count the two maps below (the latest, at most 10,000).
    pub counted: u64,
    /// Per reason.
    pub by_reason: BTreeMap<String, u64>,
    /// Per handler.
    pub by_handler: BTreeMap<String, u64>,
}

/// The state of the deployment named by `config` (its subject prefix):
/// every stream jetwire created or reads, with its durables, and the dead
/// letters per reason and handler.
///
/// ```no_run
/// # async fn demo() -> Result<(), jetwire::Error> {
/// let status = jetwire::status(&jetwire::Config::from_env()?).await?;
/// for s in &status.streams {
///     for c in &s.consumers {
///         println!("{} {}: {} pending, {} unacked", s.name, c.name, c.pending, c.ack_pending);
///     }
/// }
/// # Ok(()) }
/// ```
pub async fn status(config: &Config) -> Result<Status, Error> {
    let publisher = Publisher::connect(config).await?;
    let js = publisher.parts("jetwire status")?.0.clone();
    let prefix = config.prefix();
    let own = |name: &str| match prefix {
        Some(p) => {
            let mine = names::prefixed_stream(Some(p), "");
            name.starts_with(&mine)
                || name
                    .strip_prefix("KV_")
                    .is_some_and(|n| n.starts_with(&mine))
        }
        None => true,
    };
    let mut streams = Vec::new();
    let mut infos = js.streams();
    while let Some(info) = infos
        .try_next()
        .await
        .map_err(|e| Error::nats("listing streams", e))?
    {
        if !own(&info.config.name) {
            continue;
        }
        let stream = js
            .get_stream_no_info(&info.config.name)
            .await
            .map_err(|e| Error::nats("opening a stream", e))?;
        let consumers: Vec<jetstream::consumer::Info> =
            stream.consumers().try_collect().await.map_err(|e| {
                Error::nats(format!("listing the durables of {}", info.config.name), e)
            })?;
        let made_by_jetwire = info
            .config
            .description
            .as_deref()
            .is_some_and(|d| d.contains("jetwire"))
            || consumers
                .iter()
                .any(|c| Owner::read(&c.config.metadata).is_some());
        if !made_by_jetwire {
            continue;
        }
        streams.push(StreamStatus {
            name: info.config.name.clone(),
            subjects: info.config.subjects.clone(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            consumers: consumers
                .into_iter()
                .filter(|c| c.config.durable_name.is_some())
                .map(|c| ConsumerStatus {
                    name: c.name,
                    pending: c.num_pending,
                    ack_pending: c.num_ack_pending as u64,
                    redelivered: c.num_redelivered as u64,
                    waiting: c.num_waiting as u64,
                    last_active: c.delivered.last_active.map(SystemTime::from),
                })
                .collect(),
        });
    }
    streams.sort_by(|a, b| a.name.cmp(&b.name));
    let dead_letters = count_letters(&DeadLetters::on(publisher)).await?;
    Ok(Status {
        streams,
        dead_letters,
    })
}

async fn count_letters(dlq: &DeadLetters) -> Result<LetterCounts, Error> {
    let Ok((total, last)) = dlq.count().await else {
        return Ok(LetterCounts::default());
    };
    let from = last.saturating_sub(LETTERS_COUNTED as u64) + 1;
    let mut counts = LetterCounts {
        total,
        ..LetterCounts::default()
    };
    // One letter held at a time, and at most so many kinds of each: a
    // handler name is outside text, and a forged letter could vary it.
    let counted = dlq
        .each(
            &Filter::new().from_sequence(from).limit(LETTERS_COUNTED),
            |l| {
                let reason = l.reason().map_or("unknown", |r| r.as_str());
                bump(&mut counts.by_reason, reason);
                bump(&mut counts.by_handler, l.handler().unwrap_or("unknown"));
                true
            },
        )
        .await?;
    counts.counted = counted as u64;
    Ok(counts)
}

/// The most kinds a letter count keeps; the rest are counted as `other`.
const KINDS_KEPT: usize = 100;

fn bump(counts: &mut std::collections::BTreeMap<String, u64>, kind: &str) {
    let kind = if counts.contains_key(kind) || counts.len() < KINDS_KEPT {
        kind
    } else {
        "other"
    };
    *counts.entry(crate::text::bounded(kind, 100)).or_default() += 1;
}
