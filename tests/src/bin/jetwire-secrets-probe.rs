//! Connects as an operator would configure it, with every log at TRACE,
//! and shows everything jetwire can show: for the test that greps all of
//! it for secrets.
//!
//! Reads `Config::from_env()`; logs to stderr at TRACE; prints `Debug` and
//! `Display` of the config, the publisher, the running app and every
//! error; publishes one message and starts and stops an app; and panics
//! with the error when something fails (so the panic message is grepped
//! too). Prints `CONNECTED` once a message is stored.

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
