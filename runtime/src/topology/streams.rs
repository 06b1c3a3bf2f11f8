//! The stream a handler reads: the `stream` option, the one that captures
//! its subject, or a new default one.

use async_nats::jetstream::{self, stream::RetentionPolicy};
use jetwire_grammar::subject::{self, with_prefix};

use crate::config::{Config, Provision};
use crate::error::Error;
use crate::handler::registry::{HandlerDef, Kind};
use crate::names;
use crate::protocol::stream::create_or_open;
use crate::publish::Publisher;

/// The stream for one handler: the `stream` option, else the stream that
/// already captures the subject, else a new default stream. Its name, and
/// its config as the server has it.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    config: &Config,
    def: &HandlerDef,
) -> Result<(String, jetstream::stream::Config), Error> {
    let prefix = config.prefix();
    let subject = with_prefix(prefix, def.subject);
    let (name, stream) = if let Some(name) = def.options.stream {
        let stream = js.get_stream(name).await.map_err(|e| Error::Stream {
            stream: name.to_owned(),
            reason: format!(
                "handler `{}` binds to it with `stream = \"{name}\"`, but it cannot be read: {e}; create the stream or remove the option",
                def.path()
            ),
        })?;
        (name.to_owned(), stream)
    } else {
        match js.stream_by_subject(subject.clone()).await {
            Ok(name) => {
                let stream = js.get_stream(&name).await.map_err(|e| Error::Stream {
                    stream: name.clone(),
                    reason: format!("captures `{subject}` but cannot be read: {e}"),
                })?;
                (name, stream)
            }
            Err(e)
                if e.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound
                    && config.provision == Provision::Create =>
            {
                create_default_stream(js, config, def).await?
            }
            Err(e) => {
                return Err(Error::nats(
                    format!("looking up the stream of `{subject}`"),
                    e,
                ));
            }
        }
    };
    let info = stream.cached_info();
    if !info
        .config
        .subjects
        .iter()
        .any(|s| subject::overlaps(s, &subject))
    {
        return Err(Error::Stream {
            stream: name,
            reason: format!(
                "does not capture `{subject}`, which handler `{}` reads: add the subject to the stream or bind another with `stream = ..`",
                def.path()
            ),
        });
    }
    if def.kind == Kind::Queue
        && def.options.stream.is_some()
        && info.config.retention != RetentionPolicy::WorkQueue
    {
        return Err(Error::Stream {
            stream: name,
            reason: format!(
                "is bound by #[queue] handler `{}` with `stream = ..`, but its retention is {:?}, not workqueue: every consumer would get each job. Bind a work-queue stream, or use #[subscribe]",
                def.path(),
                info.config.retention
            ),
        });
    }
    if def.kind == Kind::Subscribe && info.config.retention == RetentionPolicy::WorkQueue {
        return Err(Error::Stream {
            stream: name,
            reason: format!(
                "captures `{subject}` with retention=workqueue, so only one consumer may read it; event handler `{}` needs limits or interest retention: bind another stream with `stream = ..`, or change the stream",
                def.path()
            ),
        });
    }
    Ok((name, info.config.clone()))
}

async fn create_default_stream(
    js: &jetstream::Context,
    config: &Config,
    def: &HandlerDef,
) -> Result<(String, jetstream::stream::Stream), Error> {
    let prefix = config.prefix();
    let (name, retention) = match def.kind {
        Kind::Queue => (names::queue_stream(prefix), RetentionPolicy::WorkQueue),
        Kind::Subscribe => (
            names::default_stream(prefix, def.subject),
            RetentionPolicy::Limits,
        ),
    };
    let subjects = with_prefix(prefix, &names::default_stream_subjects(def.subject));
    let cfg = config.stream_config(name.clone(), subjects.clone(), retention);
    let stream = create_or_open(js, cfg).await.map_err(|e| Error::Stream {
        stream: name.clone(),
        reason: format!(
            "cannot create it capturing `{subjects}` for handler `{}`: {e}; if another stream captures some of these subjects, bind it with `stream = \"..\"`",
            def.path()
        ),
    })?;
    Ok((name, stream))
}

impl Publisher {
    /// Makes sure a stream captures each subject, creating jetwire's
    /// default stream for those none captures (`ORDERS` on `orders.>`, the
    /// work queue `QUEUE` for `queue.` subjects), and the dead-letter
    /// stream: for a service that only publishes, whose first publish
    /// would otherwise fail until some app has started. Returns the stream
    /// of each subject, in order. Under `JETWIRE_PROVISION=bind` it creates
    /// nothing and fails listing what is missing.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), jetwire::Error> {
    /// let publisher = jetwire::Publisher::connect(&jetwire::Config::from_env()?).await?;
    /// let streams = publisher.ensure_streams(&["orders.created", "queue.email"]).await?;
    /// assert_eq!(streams, ["ORDERS", "QUEUE"]);
    /// # Ok(()) }
    /// ```
    pub async fn ensure_streams(&self, subjects: &[&str]) -> Result<Vec<String>, Error> {
        let (js, config) = self.parts("Publisher::ensure_streams")?;
        ensure_for_subjects(js, config, subjects).await
    }
}

/// [`Publisher::ensure_streams`] on a connection: also what an app does
/// for its handlers' `output` subjects.
pub(crate) async fn ensure_for_subjects(
    js: &jetstream::Context,
    config: &Config,
    subjects: &[&str],
) -> Result<Vec<String>, Error> {
    let prefix = config.prefix();
    let mut found = Vec::with_capacity(subjects.len());
    let mut missing = Vec::new();
    for s in subjects {
        subject::check(s, subject::Usage::Publish)
            .map_err(|e| Error::Config(format!("ensure_streams: {e}")))?;
        let full = with_prefix(prefix, s);
        match js.stream_by_subject(full.clone()).await {
            Ok(name) => found.push(name),
            Err(e) if e.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound => {
                let queue = s.split('.').next() == Some(subject::QUEUE_TOKEN);
                let (name, retention) = match queue {
                    true => (names::queue_stream(prefix), RetentionPolicy::WorkQueue),
                    false => (names::default_stream(prefix, s), RetentionPolicy::Limits),
                };
                let captures = with_prefix(prefix, &names::default_stream_subjects(s));
                if config.provision == Provision::Bind {
                    missing.push(format!("stream `{name}` capturing `{captures}`"));
                    found.push(name);
                    continue;
                }
                let cfg = config.stream_config(name.clone(), captures.clone(), retention);
                create_or_open(js, cfg).await.map_err(|e| Error::Stream {
                    stream: name.clone(),
                    reason: format!("cannot create it capturing `{captures}`: {e}"),
                })?;
                found.push(name);
            }
            Err(e) => return Err(Error::nats(format!("looking up the stream of `{full}`"), e)),
        }
    }
    if missing.is_empty() {
        crate::dlq::stream::ensure(js, config).await?;
        return Ok(found);
    }
    Err(Error::NotProvisioned {
        missing,
        permissions: format!(
            "publish to the subjects above, and to {api}.STREAM.NAMES and {api}.STREAM.INFO.<stream>; subscribe to _INBOX.>",
            api = config.jetstream_api()
        ),
    })
}
