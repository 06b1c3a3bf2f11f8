//! The dead-letter stream, and storing a letter in it: made at startup,
//! and made again when a letter cannot be stored because it is gone.

use async_nats::jetstream::{self, stream::RetentionPolicy};

use crate::config::{Config, Provision};
use crate::dlq::letter;
use crate::error::{Error, PublishError};
use crate::names;
use crate::protocol::stream::create_or_open;
use crate::publish::message::Outbound;
use crate::publish::outlet::{JetStreamOutlet, Receipt};

/// The dead-letter stream: `DLQ` on `dlq.>`, limits retention.
pub(crate) async fn ensure(js: &jetstream::Context, config: &Config) -> Result<(), Error> {
    let name = names::dlq_stream(config.prefix());
    let subjects = names::dlq_stream_subjects(config.prefix());
    let cfg = config.stream_config(name.clone(), subjects.clone(), RetentionPolicy::Limits);
    let stream = match config.provision {
        Provision::Create => create_or_open(js, cfg).await.map_err(|e| e.to_string()),
        // Never made here: `topology` listed it if missing.
        Provision::Bind => js.get_stream(&name).await.map_err(|e| e.to_string()),
    }
    .map_err(|e| Error::Stream {
        stream: name.clone(),
        reason: format!("cannot create or bind the dead-letter stream on `{subjects}`: {e}"),
    })?;
    if !stream
        .cached_info()
        .config
        .subjects
        .iter()
        .any(|s| s == &subjects)
    {
        return Err(Error::Stream {
            stream: name,
            reason: format!(
                "exists but does not capture `{subjects}`; jetwire keeps dead letters there: add the subject to the stream or delete it"
            ),
        });
    }
    Ok(())
}

/// Stores `letter`, cut to the server's `max_payload` if need be
/// ([`letter::fit`]), and waits for the server's ack. When that fails, the
/// dead-letter stream may have been deleted under the running app: it is
/// made again (a no-op when it exists) and the letter sent once more,
/// under the same message id, so it is stored once at most.
pub(crate) async fn store(
    js: &jetstream::Context,
    outlet: &JetStreamOutlet,
    config: &Config,
    letter: Outbound,
) -> Result<Receipt, PublishError> {
    let letter = letter::fit(letter, js.client().max_payload());
    match outlet.send_confirmed(letter.clone()).await {
        Ok(receipt) => Ok(receipt),
        Err(first) => match ensure(js, config).await {
            Ok(()) => outlet.send_confirmed(letter).await,
            Err(e) => {
                tracing::warn!(error = %e, "the dead-letter stream cannot be made again");
                Err(first)
            }
        },
    }
}
