//! Waiting for work: Postgres `LISTEN/NOTIFY` where there is one, and a
//! poll interval always.

use std::time::Duration;

use jetwire::ServiceContext;

use crate::pool::Pool;
use crate::tables::Tables;

/// What wakes the relay: a notification, the poll interval, or shutdown.
pub(crate) struct Wake {
    #[cfg(feature = "postgres")]
    listener: Option<sqlx::postgres::PgListener>,
}

impl Wake {
    /// Listens on the outbox's channel on Postgres; polling only when that
    /// fails, and on SQLite.
    #[allow(clippy::unused_async)]
    pub(crate) async fn listen(pool: &Pool, tables: &Tables) -> Wake {
        match pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                let listener = match sqlx::postgres::PgListener::connect_with(p).await {
                    Ok(mut l) => match l.listen(&tables.channel()).await {
                        Ok(()) => Some(l),
                        Err(e) => {
                            tracing::warn!(error = %e, "outbox: cannot LISTEN; polling instead");
                            None
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox: cannot LISTEN; polling instead");
                        None
                    }
                };
                Wake { listener }
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => {
                let _ = tables;
                Wake {
                    #[cfg(feature = "postgres")]
                    listener: None,
                }
            }
        }
    }

    /// Waits for a notification, `at_most`, or shutdown.
    pub(crate) async fn wait(&mut self, ctx: &ServiceContext, at_most: Duration) {
        let shutdown = ctx.shutdown();
        #[cfg(feature = "postgres")]
        if let Some(listener) = &mut self.listener {
            tokio::select! {
                _ = shutdown => {}
                _ = tokio::time::sleep(at_most) => {}
                got = listener.recv() => {
                    if let Err(e) = got {
                        tracing::debug!(error = %e, "outbox: LISTEN connection lost; it reconnects");
                    }
                }
            }
            return;
        }
        tokio::select! {
            _ = shutdown => {}
            _ = tokio::time::sleep(at_most) => {}
        }
    }
}
