//! Connects as an operator would configure it, with every log at TRACE,
//! and shows everything jetwire can show: for the test that greps all of
//! it for secrets.
//!
//! Reads `Config::from_env()`; logs to stderr at TRACE; prints `Debug` and
//! `Display` of the config, the publisher, the running app and every
//! error; publishes one message and starts and stops an app; and panics
//! with the error when something fails (so the panic message is grepped
//! too). Prints `CONNECTED` once a message is stored. With
//! `PROBE_DATABASE_URL` (a `postgres://` URL with a password), also shows
//! the pool, the outbox relay and the dead-letter table, every database
//! error, and what the two services log while they run a moment.

use jetwire::{App, Config, Publisher};

#[allow(clippy::print_stdout)]
fn show<T: std::fmt::Debug + std::fmt::Display>(what: &str, v: &T) {
    println!("{what} (Display): {v}");
    println!("{what} (Debug): {v:?}");
    println!("{what} (Debug, pretty): {v:#?}");
}

#[tokio::main]
#[allow(clippy::print_stdout)]
async fn main() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            show("config error", &e);
            panic!("the config: {e:?}");
        }
    };
    println!("config (Debug): {config:?}");
    println!("config (Debug, pretty): {config:#?}");
    tracing::trace!(?config, "the config");
    let publisher = match Publisher::connect(&config).await {
        Ok(p) => p,
        Err(e) => {
            show("connect error", &e);
            tracing::error!(error = %e, debug = ?e, "cannot connect");
            panic!("cannot connect: {e:?}");
        }
    };
    println!("publisher (Debug): {publisher:?}");
    if let Err(e) = publisher.ensure_streams(&["probe.stored"]).await {
        show("ensure_streams error", &e);
        panic!("{e:?}");
    }
    if let Err(e) = publisher.publish("probe.stored", &1u8).await {
        show("publish error", &e);
        panic!("{e:?}");
    }
    println!("CONNECTED");
    if let Ok(url) = std::env::var("PROBE_DATABASE_URL") {
        database(&config, &url).await;
    }
    match App::new(config).start().await {
        Ok(running) => {
            println!("running app (Debug): {running:?}");
            if let Err(e) = running.shutdown().await {
                show("shutdown error", &e);
            }
        }
        Err(e) => {
            show("start error", &e);
            panic!("{e:?}");
        }
    }
}

/// Everything the database parts can show, connected or not.
#[allow(clippy::print_stdout)]
async fn database(config: &Config, url: &str) {
    let options =
        sqlx::postgres::PgPoolOptions::new().acquire_timeout(std::time::Duration::from_secs(2));
    let pool = match options.clone().connect(url).await {
        Ok(pool) => pool,
        Err(e) => {
            show("database error", &e);
            tracing::error!(error = %e, debug = ?e, "cannot reach the database");
            match options.connect_lazy(url) {
                Ok(pool) => pool,
                Err(e) => {
                    show("database URL error", &e);
                    return;
                }
            }
        }
    };
    println!("pool (Debug): {pool:?}");
    if let Err(e) = jetwire_sql::migrate(&pool).await {
        show("migrate error", &e);
    }
    let relay = jetwire_sql::Outbox::new(pool.clone());
    let table = jetwire_sql::DeadLetterTable::new(pool);
    println!("outbox (Debug): {relay:?}");
    println!("dead-letter table (Debug): {table:?}");
    let app = App::new(config.clone())
        .only(&[])
        .service(relay)
        .service(table);
    match app.start().await {
        Ok(running) => {
            // Long enough for each service's first round against the
            // database, and its log line when that fails.
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            if let Err(e) = running.shutdown().await {
                show("shutdown error", &e);
            }
        }
        Err(e) => show("start error", &e),
    }
}
