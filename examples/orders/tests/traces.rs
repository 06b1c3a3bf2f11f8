//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, the real demo binary sends its
//! spans there (OTLP over HTTP), to a collector this test runs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jetwire_tests::{Server, unique_prefix};

/// Bytes of OTLP trace exports received on `/v1/traces`.
#[derive(Default)]
struct Received {
    exports: AtomicUsize,
    bytes: AtomicUsize,
}

/// An OTLP/HTTP collector on a free loopback port that counts what it gets.
async fn collector() -> (SocketAddr, Arc<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Arc::new(Received::default());
    let counts = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let counts = counts.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        if path == "/v1/traces"
                            && let Ok(body) = body
                        {
                            counts.exports.fetch_add(1, Ordering::SeqCst);
                            counts.bytes.fetch_add(body.len(), Ordering::SeqCst);
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_sends_its_spans_to_the_configured_endpoint() {
    let server = Server::start();
    let (addr, received) = collector().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_orders"))
        .arg("demo")
        .env("NATS_URL", server.url())
        .env("JETWIRE_SUBJECT_PREFIX", unique_prefix("otlp"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .output()
        .await
        .expect("runs");
    jetwire_tests::assert_succeeded(&out);
    // The provider is flushed before the process exits.
    let exports = received.exports.load(Ordering::SeqCst);
    let bytes = received.bytes.load(Ordering::SeqCst);
    assert!(
        exports >= 1 && bytes > 100,
        "{exports} exports, {bytes} bytes"
    );
}
