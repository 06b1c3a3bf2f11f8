//! Publishing: the header conventions, [`PublishOptions`], the
//! [`Publisher`], and the [`Receipt`] JetStream gives for a stored message.
//!
//! Every publish path (a handler's [`Context`](crate::Context), the
//! [`Publisher`], `TestApp`, the dead-letter queue) builds its message the
//! same way and sends it through one outlet: JetStream live, a log in
//! `TestApp`, the app's handlers in process on `memory://` (`local`).

pub(crate) mod batch;
pub(crate) mod local;
pub(crate) mod message;
pub(crate) mod outlet;
pub(crate) mod partitions;
pub(crate) mod publisher;

pub use batch::{BatchError, BatchReceipt};
pub use message::{
    CONTENT_TYPE, CORRELATION_ID, KEY, MSG_ID, Message, PublishOptions, TRACEPARENT, TRACESTATE,
    VERSION,
};
pub use outlet::{PendingReceipt, Receipt};
pub use publisher::Publisher;
