//! Extractors of the user's own beside the built-in ones, and middleware
//! that feeds them.
use jetwire::middleware::{from_fn, Next};
use jetwire::{queue, Context, Delivery, Extension, FromDelivery, HandlerError, Headers, State};

#[derive(Clone)]
struct Tenant(#[allow(dead_code)] String);

/// An extractor that reads a header and can fail.
struct Region(#[allow(dead_code)] String);

impl FromDelivery for Region {
    async fn from_delivery(delivery: &Delivery) -> Result<Self, HandlerError> {
        delivery
            .headers()
            .get("region")
            .map(|r| Region(r.to_string()))
            .ok_or_else(|| HandlerError::permanent("no region"))
    }
}

/// An extractor that awaits something.
struct Late;

impl FromDelivery for Late {
    fn from_delivery(
        _delivery: &Delivery,
    ) -> impl std::future::Future<Output = Result<Self, HandlerError>> + Send {
        async {
            std::future::ready(()).await;
            Ok(Late)
        }
    }
}

#[derive(Clone)]
struct Db;

#[queue("queue.extract.all")]
async fn every_kind(
    _job: u64,
    _ctx: Context,
    _db: State<Db>,
    Extension(_tenant): Extension<Tenant>,
    _headers: Headers,
    _region: Region,
    _late: Late,
) -> Result<(), HandlerError> {
    Ok(())
}

async fn tenant(mut delivery: Delivery, next: Next) -> Result<(), HandlerError> {
    delivery.extensions_mut().insert(Tenant("t".into()));
    delivery.headers_mut().insert("region", "eu");
    next.run(delivery).await
}

fn main() {
    let config = jetwire::Config::builder().app("x").build().unwrap();
    let _app = jetwire::App::new(config)
        .state(Db)
        .middleware(from_fn(tenant))
        .middleware_for("every_kind", from_fn(|d: Delivery, next: Next| next.run(d)));
}
