// A fn given in code whose parameter after the payload is no extractor:
// the registration does not compile.
use jetwire::{App, Config, HandlerError};

struct Mailer;

async fn send_email(_job: u64, _mailer: Mailer) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {
    let _ = App::new(Config::default()).queue("queue.email", send_email);
}
