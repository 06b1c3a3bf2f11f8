//! The grammar jetwire checks at compile time and again at run time.
//!
//! One source of truth for the small languages that `jetwire-macros`
//! checks while it expands `#[subscribe]`/`#[queue]`, and `jetwire` when
//! it publishes, binds streams and routes test messages:
//!
//! - [`subject`]: NATS subjects as jetwire accepts them, with the namespace
//!   rules for events, work queues and publishing, and wildcard matching;
//! - [`duration`]: `"250ms"`, `"5s"`, `"2m"`, `"1h"`;
//! - [`name`]: stream and durable consumer names;
//! - [`deliver`]: where a new event durable starts reading;
//! - [`options`]: the rules of a handler's options, with their errors.
//!
//! ```
//! use jetwire_grammar::subject::{self, Usage};
//!
//! assert!(subject::check("orders.created", Usage::Subscribe).is_ok());
//! let err = subject::check("orders..created", Usage::Subscribe).unwrap_err();
//! assert_eq!(err.to_string(), "token 2 of `orders..created` is empty: remove the doubled `.`");
//! ```

pub mod defaults;
pub mod deliver;
pub mod duration;
pub mod name;
pub mod options;
pub mod subject;
