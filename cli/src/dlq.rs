//! `jetwire dlq replay` and `purge`: the letters chosen, confirmed, acted
//! on one at a time with a progress bar on a terminal.

use std::io::{BufRead, IsTerminal, Write};

use jetwire::dlq::{DeadLetter, DeadLetters, Filter};

use crate::args::Many;
use crate::show;

/// What to do to each letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    Replay,
    Purge,
}

impl Act {
    fn verb(self) -> &'static str {
        match self {
            Act::Replay => "replay",
            Act::Purge => "purge",
        }
    }
}

/// The letters `many` names: its sequences, or every letter its filters
/// admit (read a page at a time, so the list is bounded by `--limit`
/// where one is given).
async fn chosen(dlq: &DeadLetters, many: &Many) -> Result<Vec<DeadLetter>, jetwire::Error> {
    let filter = if many.all {
        many.filter.filter()
    } else {
        Filter::new().sequences(many.seqs.iter().copied())
    };
    dlq.list(&filter).await
}

pub(crate) async fn act(dlq: &DeadLetters, act: Act, many: &Many) -> Result<(), jetwire::Error> {
    let letters = chosen(dlq, many).await?;
    if many.dry_run {
        println_out(
            &format!("would {} {} letter(s):", act.verb(), letters.len()),
            many.json,
        );
        show::letters(&letters, many.json);
        return Ok(());
    }
    if many.all && !many.yes && !confirm(act, letters.len()) {
        return Err(jetwire::Error::Config(format!(
            "not confirmed: nothing done; pass --yes to {} without asking",
            act.verb()
        )));
    }
    let bar = progress(letters.len() as u64);
    let mut done = Vec::new();
    for letter in &letters {
        let seq = letter.sequence();
        match act {
            Act::Replay => {
                let receipt = dlq.replay(seq).await?;
                done.push(serde_json::json!({"seq": seq, "stream": receipt.stream, "sequence": receipt.sequence, "duplicate": receipt.duplicate}));
            }
            Act::Purge => {
                dlq.purge(&Filter::new().sequences([seq])).await?;
                done.push(serde_json::json!({"seq": seq}));
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if many.json {
        println_out(
            &serde_json::json!({ "action": act.verb(), "count": done.len(), "letters": done })
                .to_string(),
            true,
        );
    } else {
        println_out(
            &format!(
                "{} {} letter(s)",
                match act {
                    Act::Replay => "replayed",
                    Act::Purge => "purged",
                },
                done.len()
            ),
            false,
        );
    }
    Ok(())
}

/// A progress bar on a terminal, for more than a handful.
fn progress(n: u64) -> Option<indicatif::ProgressBar> {
    (std::io::stderr().is_terminal() && n > 5).then(|| indicatif::ProgressBar::new(n))
}

/// Asks on the terminal; anything but `y` is no. Without a terminal, no.
fn confirm(act: Act, n: usize) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "{} {n} letter(s)? [y/N] ", act.verb());
    let _ = err.flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    answer.trim().eq_ignore_ascii_case("y")
}

#[allow(clippy::print_stdout)]
fn println_out(text: &str, json: bool) {
    if !json || text.starts_with('{') || text.starts_with('[') {
        println!("{text}");
    }
}
