//! Publishing with no server (`NATS_URL=memory://`): what a [`Publisher`]
//! of an app running in memory sends through, and the app of this process
//! that `Publisher::connect` finds.
//!
//! [`Publisher`]: crate::Publisher

use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::error::{Error, PublishError};
use crate::protocol::streamed::Output;
use crate::publish::message::Outbound;
use crate::publish::outlet::Receipt;

/// An app's handlers in this process, taking messages in.
pub(crate) trait Local: Send + Sync + 'static {
    /// Stores `msg` for every handler whose subject it matches.
    fn publish(&self, msg: Outbound) -> Result<Receipt, PublishError>;
    /// Stores signal `key`.
    fn signal(&self, key: String, value: Bytes);
    /// Follows the streamed output under `keys`.
    fn follow(&self, keys: String) -> BoxStream<'static, Result<Output, Error>>;
}

/// The app on `memory://` started last in this process, while it runs.
static CURRENT: Mutex<Option<Weak<dyn Local>>> = Mutex::new(None);

/// Makes `local` the app `Publisher::connect` finds.
pub(crate) fn install(local: &Arc<dyn Local>) {
    *CURRENT.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::downgrade(local));
}

/// The app on `memory://` of this process, or why there is none.
pub(crate) fn current() -> Result<Arc<dyn Local>, Error> {
    CURRENT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(Weak::upgrade)
        .ok_or_else(|| {
            Error::Config(
                "NATS_URL=memory://: no app runs in memory in this process; start the App first (App::start), then connect, or take RunningApp::publisher".into(),
            )
        })
}
