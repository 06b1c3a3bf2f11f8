#![allow(dead_code)]
//! Handlers declared by a `macro_rules!`, with extractors and an output:
//! the expansion's locals resolve whatever hygiene the tokens carry.
use jetwire::{queue, subscribe, Context, HandlerError, State};

#[derive(Clone)]
struct Mailer;

macro_rules! handlers {
    ($($name:ident = $subject:literal),*) => {
        $(
            #[queue($subject, partitions = 2)]
            async fn $name(_n: u64, _ctx: Context, _m: State<Mailer>) -> Result<(), HandlerError> {
                Ok(())
            }
        )*
    };
}

handlers!(first = "queue.first", second = "queue.second");

macro_rules! with_output {
    ($name:ident, $t:ty) => {
        #[subscribe("orders.placed", output = "orders.priced")]
        async fn $name(n: $t) -> Result<$t, HandlerError> {
            Ok(n)
        }
    };
}

with_output!(price, u64);

fn main() {}
