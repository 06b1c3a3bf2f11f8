//! A work queue on a stream the operator made may use any namespace.
use jetwire::{HandlerError, queue};
use serde::Deserialize;

#[derive(Deserialize)]
struct Job {
    id: u64,
}

#[queue("render.jobs", stream = "LEGACY_RENDER")]
async fn render(job: Job) -> Result<(), HandlerError> {
    let _ = job.id;
    Ok(())
}

#[queue("legacy.*.jobs", stream = "LEGACY")]
async fn legacy(job: Job) -> Result<(), HandlerError> {
    let _ = job.id;
    Ok(())
}

fn main() {}
