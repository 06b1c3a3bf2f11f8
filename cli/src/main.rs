//! `jetwire`: dead letters and the state of a deployment, from a shell.
//!
//! Configured like an app: `NATS_URL` (or `--server`), the credential and
//! TLS variables (the `nats` CLI's names and `NATS_CONTEXT`, or
//! `--context`, too) and `JETWIRE_SUBJECT_PREFIX`. Exit codes: 0 done, 1 error (one line on
//! stderr saying what to do), 2 bad usage.

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command, DlqCommand};

mod args;
mod dlq;
mod show;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = e.to_string();
            let one_line: String = text.lines().collect::<Vec<_>>().join("; ");
            #[allow(clippy::print_stderr)]
            {
                eprintln!("jetwire: {one_line}");
            }
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<(), jetwire::Error> {
    let config = cli.config()?;
    match cli.command {
        Command::Status { json } => show::status(&jetwire::status(&config).await?, json),
        Command::Workers { json } => {
            show::workers(&jetwire::directory::list(&config).await?, json);
            Ok(())
        }
        Command::Dlq(cmd) => {
            let dlq = jetwire::dlq::DeadLetters::connect(&config).await?;
            match cmd {
                DlqCommand::Ls { filter, json } => {
                    let letters = dlq
                        .list(&filter.filter().limit(filter.limit.unwrap_or(50)))
                        .await?;
                    show::letters(&letters, json);
                    Ok(())
                }
                DlqCommand::Show { seq, json } => {
                    show::letter(&dlq.get(seq).await?, json);
                    Ok(())
                }
                DlqCommand::Replay(many) => dlq::act(&dlq, dlq::Act::Replay, &many).await,
                DlqCommand::Purge(many) => dlq::act(&dlq, dlq::Act::Purge, &many).await,
            }
        }
    }
}
