//! The command line, as clap reads it.

use clap::{Args, Parser, Subcommand};

/// Dead letters and the state of a jetwire deployment.
#[derive(Parser, Debug)]
#[command(name = "jetwire", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Dead letters: list, show, replay, purge.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Every stream and durable of the deployment, and its dead letters per reason and handler.
    Status {
        /// One JSON document instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Every running app instance, from the worker directory.
    Workers {
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum DlqCommand {
    /// Lists dead letters, oldest first.
    Ls {
        #[command(flatten)]
        filter: FilterArgs,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows one letter: its headers, and its payload (pretty when JSON).
    Show {
        /// The letter's sequence in the dead-letter stream.
        seq: u64,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Sends letters back to their original subjects, then deletes them.
    Replay(Many),
    /// Deletes letters.
    Purge(Many),
}

/// Which letters: sequences, or `--all`; the filters hold for either.
#[derive(Args, Debug)]
pub(crate) struct Many {
    /// Letter sequences.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub(crate) seqs: Vec<u64>,
    /// Every letter the filters admit.
    #[arg(long)]
    pub(crate) all: bool,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Lists what would happen, and changes nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Does not ask for confirmation.
    #[arg(long, short)]
    pub(crate) yes: bool,
    /// One JSON document as the result.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The filters of `ls`, and of `replay --all` and `purge --all`.
#[derive(Args, Debug, Clone)]
pub(crate) struct FilterArgs {
    /// Only letters dead-lettered for this reason (permanent, decode, exhausted, panic, timeout).
    #[arg(long)]
    pub(crate) reason: Option<jetwire::DlqReason>,
    /// Only letters of this handler (its fn name).
    #[arg(long)]
    pub(crate) handler: Option<String>,
    /// Only letters of this original subject (wildcards allowed).
    #[arg(long)]
    pub(crate) subject: Option<String>,
    /// Only letters dead-lettered within this long (`90s`, `2h`, `7d`).
    #[arg(long, value_parser = parse_duration)]
    pub(crate) since: Option<std::time::Duration>,
    /// At most this many letters.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    jetwire_duration(s)
}

/// Durations as the attributes write them.
fn jetwire_duration(s: &str) -> Result<std::time::Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write 90s, 15m, 2h or 7d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?} is not a duration: write 90s, 15m, 2h or 7d")),
    };
    n.checked_mul(secs)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is longer than a hundred years"))
}

impl FilterArgs {
    pub(crate) fn filter(&self) -> jetwire::dlq::Filter {
        let mut f = jetwire::dlq::Filter::new();
        if let Some(r) = self.reason {
            f = f.reason(r);
        }
        if let Some(h) = &self.handler {
            f = f.handler(h.clone());
        }
        if let Some(s) = &self.subject {
            f = f.subject(s.clone());
        }
        if let Some(d) = self.since {
            f = f.within(d);
        }
        if let Some(n) = self.limit {
            f = f.limit(n);
        }
        f
    }
}
