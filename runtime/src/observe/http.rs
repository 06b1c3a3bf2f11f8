//! The one small HTTP listener (`JETWIRE_HTTP_ADDR`): `/healthz`,
//! `/readyz` and `/metrics`, on hyper.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
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

/// Listens on `addr` and serves until dropped.
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
        loop {
            let Ok((stream, _)) = socket.accept().await else {
                continue;
            };
            while connections.try_join_next().is_some() {}
            let readiness = readiness.clone();
            connections.spawn(async move {
                let service = service_fn(move |req| {
                    let readiness = readiness.clone();
                    async move { Ok::<_, Infallible>(answer(&req, &readiness)) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Listener { addr, task })
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
            respond(status, "application/json", body)
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
            super::prometheus::render(handle).into_bytes(),
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
    respond(status, "text/plain; charset=utf-8", body.into_bytes())
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
