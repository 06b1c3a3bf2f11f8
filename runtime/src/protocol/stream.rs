//! Making a stream that other apps may be making, or changing, at the
//! same moment.

use async_nats::jetstream::{self, context::CreateStreamError, context::CreateStreamErrorKind};

use crate::protocol::version;

/// The stream `config` names: opened if it exists, else created. Another
/// app may create it between the two and change it at once (record a
/// partition count, add its subjects): the server then refuses this
/// create as a stream of that name with another config, and the one it
/// has is opened instead. What it holds is the caller's to check.
pub(crate) async fn create_or_open(
    js: &jetstream::Context,
    mut config: jetstream::stream::Config,
) -> Result<jetstream::stream::Stream, CreateStreamError> {
    let name = config.name.clone();
    // Fast batches (`Publisher::publish_fast`) need the stream to allow them.
    config.allow_batch_publish |= version::at_least(&js.client().server_info().version, (2, 14));
    match js.get_or_create_stream(config).await {
        Err(e) if made_meanwhile(&e) => js.get_stream(&name).await.map_err(|_| e),
        made => made,
    }
}

fn made_meanwhile(e: &CreateStreamError) -> bool {
    matches!(
        e.kind(),
        CreateStreamErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST
    )
}
