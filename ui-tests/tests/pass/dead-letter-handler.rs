//! A handler of dead letters: every letter, or one subject's.
use jetwire::dlq::DeadLetter;
use jetwire::{HandlerError, subscribe};

#[subscribe("dlq.>")]
async fn page_on_call(letter: DeadLetter) -> Result<(), HandlerError> {
    let _ = (letter.subject(), letter.reason(), letter.error());
    Ok(())
}

#[subscribe("dlq.queue.email", max_deliver = 3)]
async fn email_failures(letter: jetwire::dlq::DeadLetter) {
    let _ = letter.sequence();
}

fn main() {}
