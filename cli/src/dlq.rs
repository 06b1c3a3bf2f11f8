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

/// How many letters are read at once: what the command holds in memory,
/// whatever the dead-letter stream holds.
const PAGE: usize = 100;

/// The letters `many` names, as they are now: its sequences or every
/// letter (`--all`), through its filters either way, and only those
/// stored before the command began (a replay that fails again is a new
/// letter, left for the next command).
fn chosen(many: &Many, last: u64) -> Filter {
    let filter = many.filter.filter().up_to(last);
    if many.all {
        filter
    } else {
        filter.sequences(many.seqs.iter().copied())
    }
}

/// Calls `visit` with each letter `filter` admits, a page at a time.
async fn pages(
    dlq: &DeadLetters,
    filter: &Filter,
    mut visit: impl AsyncFnMut(DeadLetter) -> Result<(), jetwire::Error>,
) -> Result<u64, jetwire::Error> {
    let mut left = filter.max().map_or(u64::MAX, |n| n as u64);
    let mut at = 1;
    let mut seen = 0;
    while left > 0 {
        let take = PAGE.min(usize::try_from(left).unwrap_or(PAGE));
        let page = dlq
            .list(&filter.clone().from_sequence(at).limit(take))
            .await?;
        let Some(last) = page.last().map(DeadLetter::sequence) else {
            break;
        };
        at = last + 1;
        for letter in page {
            visit(letter).await?;
            seen += 1;
            left -= 1;
        }
    }
    Ok(seen)
}

pub(crate) async fn act(dlq: &DeadLetters, act: Act, many: &Many) -> Result<(), jetwire::Error> {
    let (_, last) = dlq.count().await?;
    let filter = chosen(many, last);
    if many.dry_run {
        return dry_run(dlq, act, &filter, many.json).await;
    }
    let n = dlq.each(&filter, |_| true).await?;
    // Purging deletes for good: asked for sequences as for --all.
    let ask = act == Act::Purge || many.all;
    if ask && !many.yes && !confirm(act, n) {
        return Err(jetwire::Error::Config(format!(
            "not confirmed: nothing done; pass --yes to {} without asking",
            act.verb()
        )));
    }
    let bar = progress(n as u64);
    let mut done = Vec::new();
    pages(dlq, &filter, async |letter| {
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
        Ok(())
    })
    .await?;
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

/// What `act` would do, printed a page at a time.
async fn dry_run(
    dlq: &DeadLetters,
    act: Act,
    filter: &Filter,
    json: bool,
) -> Result<(), jetwire::Error> {
    if json {
        let mut first = true;
        print_raw(&format!(
            r#"{{"action":"{}","dry_run":true,"letters":["#,
            act.verb()
        ));
        let n = pages(dlq, filter, async |letter| {
            let sep = if std::mem::take(&mut first) { "" } else { "," };
            print_raw(&format!("{sep}{}", show::letter_json(&letter, false)));
            Ok(())
        })
        .await?;
        print_raw(&format!("],\"count\":{n}}}\n"));
        return Ok(());
    }
    let mut page = Vec::with_capacity(PAGE);
    let mut n = 0;
    pages(dlq, filter, async |letter| {
        page.push(letter);
        n += 1;
        if page.len() == PAGE {
            show::letters(&std::mem::take(&mut page), false);
        }
        Ok(())
    })
    .await?;
    if !page.is_empty() || n == 0 {
        show::letters(&page, false);
    }
    println_out(&format!("would {} {n} letter(s)", act.verb()), false);
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
fn print_raw(text: &str) {
    print!("{text}");
}

#[allow(clippy::print_stdout)]
fn println_out(text: &str, json: bool) {
    if !json || text.starts_with('{') || text.starts_with('[') {
        println!("{text}");
    }
}
