//! The app's background tasks, each spawned under the name its end is
//! reported by, and the supervisor that stops the app when one ends.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::text;

/// Why a background task stopped the app.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskEnd {
    /// It panicked.
    #[error("{task} panicked: {panic}")]
    Panicked { task: String, panic: String },
    /// It returned an error.
    #[error("{task} failed: {error}")]
    Failed { task: String, error: Error },
    /// It returned while the app was running.
    #[error("{task} ended while the app was running")]
    Ended { task: String },
}

/// The background tasks, by name.
#[derive(Default)]
pub(crate) struct Tasks {
    set: JoinSet<Result<(), Error>>,
    names: HashMap<Id, String>,
}

impl Tasks {
    /// Runs `task` in the background as `name` ("the advisory reader",
    /// "service `outbox`"): what a failure of it is reported as.
    pub(crate) fn spawn(
        &mut self,
        name: impl Into<String>,
        task: impl Future<Output = Result<(), Error>> + Send + 'static,
    ) {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name.into());
    }

    /// Waits for the next task to end: `None` once none is left; for each
    /// one, why it stopped the app, or `Ok` if it ended as it should (once
    /// `stop` was cancelled, or cancelled itself).
    async fn next(&mut self, stop: &CancellationToken) -> Option<Result<(), TaskEnd>> {
        let joined = self.set.join_next_with_id().await?;
        let stopping = stop.is_cancelled();
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let task = self
            .names
            .remove(&id)
            .unwrap_or_else(|| "a background task".to_owned());
        Some(match joined {
            Err(e) if e.is_panic() => Err(TaskEnd::Panicked {
                task,
                panic: text::bounded(&text::panic_text(&*e.into_panic()), 1024),
            }),
            Ok((_, Err(error))) => Err(TaskEnd::Failed { task, error }),
            Ok((_, Ok(()))) if !stopping => Err(TaskEnd::Ended { task }),
            // Cancelled at shutdown, or ended because shutdown began.
            Err(_) | Ok((_, Ok(()))) => Ok(()),
        })
    }
}

/// Owns the app's background tasks until they have all ended. One that
/// panics, fails, or ends before shutdown has begun stops the app: it is
/// logged by name, `failed` says why, and `stop` ends every other.
/// Returns what went wrong.
pub(super) async fn supervise(
    mut tasks: Tasks,
    stop: CancellationToken,
    failed: tokio::sync::watch::Sender<Option<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    while let Some(ended) = tasks.next(&stop).await {
        let Err(why) = ended else { continue };
        let why = why.to_string();
        tracing::error!(problem = %why, "stopping the app");
        failed.send_replace(Some(why.clone()));
        problems.push(why);
        stop.cancel();
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each way a task ends is reported under its own name; tasks that
    /// end once shutdown began are not problems.
    #[tokio::test]
    async fn the_supervisor_names_the_task_that_stopped_the_app() {
        let run = |spawn: fn(&mut Tasks)| async move {
            let mut tasks = Tasks::default();
            spawn(&mut tasks);
            let (failed, _seen) = tokio::sync::watch::channel(None);
            supervise(tasks, CancellationToken::new(), failed).await
        };
        let panicked = run(|t| t.spawn("the advisory reader", async { panic!("boom") })).await;
        assert_eq!(panicked, ["the advisory reader panicked: boom"]);
        let failed = run(|t| {
            t.spawn("service `outbox`", async {
                Err(Error::Config("no table".into()))
            })
        })
        .await;
        assert_eq!(failed.len(), 1);
        assert!(
            failed[0].starts_with("service `outbox` failed: ") && failed[0].contains("no table"),
            "{failed:?}"
        );
        let ended = run(|t| t.spawn("the loop of handler `a::b`", async { Ok(()) })).await;
        assert_eq!(
            ended,
            ["the loop of handler `a::b` ended while the app was running"]
        );
        let mut tasks = Tasks::default();
        let stop = CancellationToken::new();
        stop.cancel();
        tasks.spawn("service `quiet`", async { Ok(()) });
        let (failed, _seen) = tokio::sync::watch::channel(None);
        assert!(supervise(tasks, stop, failed).await.is_empty());
    }
}
