//! The one small HTTP listener (`JETWIRE_HTTP_ADDR`): `/healthz`,
//! `/readyz` and `/metrics`, on hyper.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::health::Readiness;

/// The listener and its connections; dropping it stops them all.
pub(crate) struct Listener {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// The address it listens on (the port chosen, for `:0`).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long a client may take to send a request's headers; a connection
/// that sends none is closed after this too.
const HEADER_READ: Duration = Duration::from_secs(5);
/// How long one connection is served: keep-alive connections are closed
/// gracefully after this, so none is held open for good.
const CONNECTION_FOR: Duration = Duration::from_secs(30);
/// The most connections served at once; past it a new one is closed at
/// once, so file descriptors stay for NATS and the handlers' own I/O.
const MOST_CONNECTIONS: usize = 256;
/// The most a connection buffers: the headers of a probe or a scrape are
/// far smaller (hyper's least is 8 KiB).
const MAX_BUF: usize = 16 * 1024;

/// Listens on `addr` and serves until dropped: every connection bounded in
/// time and number, so no client can hold the listener or spin it.
pub(crate) async fn listen(
    addr: SocketAddr,
    readiness: Arc<Readiness>,
) -> std::io::Result<Listener> {
    #[cfg(feature = "metrics")]
    let _ = super::prometheus::handle();
    let socket = TcpListener::bind(addr).await?;
    let addr = socket.local_addr()?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    let task = tokio::spawn(async move {
        // Owned here: aborting the listener aborts its connections.
        let mut connections = JoinSet::new();
        let slots = Arc::new(Semaphore::new(MOST_CONNECTIONS));
        let mut pause = AcceptPause::default();
        loop {
            let stream = match socket.accept().await {
                Ok((stream, _)) => {
                    pause.reset();
                    stream
                }
                Err(e) => {
                    // Out of file descriptors, say: accepting again at once
                    // would fail at once, in a loop that spins a core.
                    pause.wait(&e).await;
                    continue;
                }
            };
            while connections.try_join_next().is_some() {}
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!("HTTP: {MOST_CONNECTIONS} connections open; closing a new one");
                drop(stream);
                continue;
            };
            connections.spawn(serve(stream, readiness.clone(), slot));
        }
    });
    Ok(Listener { addr, task })
}

/// Serves one connection for at most [`CONNECTION_FOR`].
async fn serve(stream: TcpStream, readiness: Arc<Readiness>, _slot: OwnedSemaphorePermit) {
    let service = service_fn(move |req| {
        let readiness = readiness.clone();
        async move { Ok::<_, Infallible>(answer(&req, &readiness)) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ)
        .max_buf_size(MAX_BUF)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = tokio::time::sleep(CONNECTION_FOR) => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HEADER_READ, connection).await;
        }
    }
}

/// The pause after a failed accept: from 10 ms, doubling to 1 s, logged
/// once per run of failures.
#[derive(Default)]
struct AcceptPause(Option<Duration>);

impl AcceptPause {
    async fn wait(&mut self, e: &std::io::Error) {
        let pause = match self.0 {
            None => {
                tracing::warn!(error = %e, "HTTP: cannot accept a connection; pausing");
                Duration::from_millis(10)
            }
            Some(p) => (p * 2).min(Duration::from_secs(1)),
        };
        self.0 = Some(pause);
        tokio::time::sleep(pause).await;
    }

    fn reset(&mut self) {
        self.0 = None;
    }
}

fn answer(req: &Request<Incoming>, readiness: &Readiness) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let health = readiness.health();
            let status = if health.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = serde_json::to_vec(&health).unwrap_or_default();
            respond(status, "application/json", Bytes::from(body))
        }
        "/metrics" => metrics(),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

#[cfg(feature = "metrics")]
fn metrics() -> Response<Full<Bytes>> {
    match super::prometheus::handle() {
        Some(handle) => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            super::prometheus::rendered(handle),
        ),
        None => text(
            StatusCode::NOT_FOUND,
            "this process installed a metrics recorder of its own: jetwire's metrics go there\n"
                .into(),
        ),
    }
}

#[cfg(not(feature = "metrics"))]
fn metrics() -> Response<Full<Bytes>> {
    text(
        StatusCode::NOT_FOUND,
        "jetwire was built without its `metrics` feature: enable it for /metrics\n".into(),
    )
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", Bytes::from(body))
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
