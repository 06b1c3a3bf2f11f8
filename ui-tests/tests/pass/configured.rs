// Plain async fns and a closure registered in code, of each accepted shape.
use jetwire::{App, Config, Context, HandlerError, HandlerOptions, Headers, Raw, State};

#[derive(serde::Deserialize)]
struct Job {
    id: u64,
}

#[derive(Clone)]
struct Db;

async fn bare(_job: Job) {}

async fn all(
    job: Job,
    _ctx: Context,
    _db: State<Db>,
    _headers: Headers,
) -> Result<(), HandlerError> {
    let _ = job.id;
    Ok(())
}

async fn output(job: Raw) -> Result<usize, std::io::Error> {
    Ok(job.len())
}

fn main() {
    let _ = App::new(Config::default())
        .state(Db)
        .queue("queue.bare", bare)
        .subscribe("orders.all", all)
        .queue_with("queue.out", output, HandlerOptions::new().output("sizes.counted"))
        .subscribe_with(
            "orders.closure",
            |_job: Job, _ctx: Context| async {},
            HandlerOptions::new().name("on_closure"),
        );
}
