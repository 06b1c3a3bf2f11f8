//! The stream a handler reads: the `stream` option, the one that captures
//! its subject, or a new default one.

use async_nats::jetstream::{self, stream::RetentionPolicy};
use jetwire_grammar::subject::{self, with_prefix};

use crate::config::Config;
use crate::error::Error;
use crate::handler::registry::{HandlerDef, Kind};
use crate::names;

/// The stream for one handler: the `stream` option, else the stream that
/// already captures the subject, else a new default stream.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    config: &Config,
    def: &HandlerDef,
) -> Result<String, Error> {
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
            Err(e) if e.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound => {
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
    if def.kind == Kind::Subscribe && info.config.retention == RetentionPolicy::WorkQueue {
        return Err(Error::Stream {
            stream: name,
            reason: format!(
                "captures `{subject}` with retention=workqueue, so only one consumer may read it; event handler `{}` needs limits or interest retention: bind another stream with `stream = ..`, or change the stream",
                def.path()
            ),
        });
    }
    Ok(name)
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
    let stream = js.get_or_create_stream(cfg).await.map_err(|e| Error::Stream {
        stream: name.clone(),
        reason: format!(
            "cannot create it capturing `{subjects}` for handler `{}`: {e}; if another stream captures some of these subjects, bind it with `stream = \"..\"`",
            def.path()
        ),
    })?;
    Ok((name, stream))
}
