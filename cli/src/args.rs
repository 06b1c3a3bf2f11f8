//! The command line, as clap reads it.

use clap::{Args, Parser, Subcommand};

/// Dead letters and the state of a jetwire deployment.
#[derive(Parser, Debug)]
#[command(name = "jetwire", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// The NATS server's URL (over `NATS_URL`).
    #[arg(long, short, global = true, env = "NATS_URL", hide_env_values = true)]
    pub(crate) server: Option<String>,
    /// A `nats` CLI context, by name or path (over `NATS_CONTEXT`).
    #[arg(long, global = true, env = "NATS_CONTEXT")]
    pub(crate) context: Option<String>,
    /// The JetStream domain the deployment's streams are in, such as a
    /// leaf node's (over `NATS_JS_DOMAIN`).
    #[arg(long, global = true, env = "NATS_JS_DOMAIN")]
    pub(crate) js_domain: Option<String>,
}

impl Cli {
    /// The deployment's config: the environment's variables, with
    /// `--server`, `--context` and `--js-domain` over theirs.
    pub(crate) fn config(&self) -> Result<jetwire::Config, jetwire::Error> {
        let config = jetwire::Config::from_lookup(|name| {
            let flag = match name {
                "NATS_URL" => self.server.clone(),
                "NATS_CONTEXT" => self.context.clone(),
                "NATS_JS_DOMAIN" => self.js_domain.clone(),
                _ => None,
            };
            flag.or_else(|| std::env::var(name).ok())
                .filter(|v| !v.is_empty())
        })?;
        if config.in_memory() {
            return Err(jetwire::Error::Config(
                "NATS_URL=memory:// is an app inside its own process, with nothing another process can read: point NATS_URL (or --server) at a nats-server".into(),
            ));
        }
        Ok(config)
    }
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

/// A duration as the attributes write one (`500ms`, `90s`, `15m`, `2h`,
/// `7d`), by the grammar the macros use: at most a hundred years.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = jetwire_grammar::duration::parse(s).map_err(|e| e.to_string())?;
    if d > std::time::Duration::from_secs(100 * 365 * 86_400) {
        return Err(format!("{s:?} is longer than a hundred years"));
    }
    Ok(d)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_duration;

    #[test]
    fn durations_read_as_the_attributes_write_them() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "5", "5x", "ms", "99999999999999999999s", "36501d"] {
            let error = parse_duration(bad).expect_err(bad);
            assert!(!error.is_empty(), "{bad}");
        }
        let error = parse_duration("5").expect_err("no unit");
        assert!(error.contains("5s"), "says what to write: {error}");
    }
}
