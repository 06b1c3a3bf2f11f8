//! The AsyncAPI document: valid against the AsyncAPI 3.0.0 JSON Schema,
//! a channel per subject and an operation per handler with its options,
//! payload schemas where the type has one (shared types defined once),
//! and `JETWIRE_ASYNCAPI` writing it without a server.

use jetwire::dlq::DeadLetter;
use jetwire::{App, Config, HandlerError, Raw, queue, subscribe};
use jetwire_tests::asyncapi::assert_valid;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, JsonSchema)]
struct Author {
    name: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct DocCreated {
    id: u64,
    author: Author,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct DocJob {
    id: u64,
    reviewer: Author,
}

#[subscribe("docs.created")]
async fn docs_created(_doc: DocCreated) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.docs", max_deliver = 4, backoff = ["1s", "5s"])]
async fn docs_job(_job: DocJob) -> Result<(), HandlerError> {
    Ok(())
}

#[subscribe("docs.*.raw")]
async fn docs_raw(_raw: Raw) -> Result<(), HandlerError> {
    Ok(())
}

#[subscribe("dlq.>")]
async fn docs_alert(_letter: DeadLetter) -> Result<(), HandlerError> {
    Ok(())
}

const HANDLERS: [&str; 4] = ["docs_created", "docs_job", "docs_raw", "docs_alert"];

fn app() -> App {
    let config = Config::builder()
        .url("nats://127.0.0.1:4222,tls://nats.internal:4443")
        .app("docs")
        .subject_prefix("stage")
        .build()
        .expect("valid");
    App::new(config).only(&HANDLERS).version("2.1.0")
}

#[test]
fn the_document_is_valid_and_describes_every_handler() {
    let doc = app().asyncapi();
    assert_valid(&doc);
    assert_eq!(doc["info"]["title"], "docs");
    assert_eq!(doc["info"]["version"], "2.1.0");
    assert_eq!(doc["servers"]["nats-1"]["protocol"], "tls");
    for handler in HANDLERS {
        let op = &doc["operations"][handler];
        assert_eq!(op["action"], "receive", "{handler}: {doc:#}");
    }
    // Channels carry the prefixed subject, wildcards included.
    assert_eq!(
        doc["channels"]["docs.created"]["address"],
        "stage.docs.created"
    );
    assert_eq!(doc["channels"]["docs._.raw"]["address"], "stage.docs.*.raw");
    assert_eq!(
        doc["operations"]["docs_created"]["channel"]["$ref"],
        "#/channels/docs.created"
    );
    // Options: in x-jetwire, and a work queue's durable as its queue.
    let job = &doc["operations"]["docs_job"];
    assert_eq!(job["x-jetwire"]["kind"], "queue");
    assert_eq!(job["x-jetwire"]["max_deliver"], 4);
    assert_eq!(job["x-jetwire"]["backoff"], serde_json::json!(["1s", "5s"]));
    assert_eq!(
        job["bindings"]["nats"]["queue"],
        job["x-jetwire"]["durable"]
    );
    assert!(doc["operations"]["docs_created"]["bindings"].is_null());
    // Payload schemas: each type defined once in components, and referred to.
    let messages = &doc["components"]["messages"];
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        messages["DocCreated"]["payload"]["$ref"],
        "#/components/schemas/DocCreated"
    );
    for (ty, field) in [("DocCreated", "author"), ("DocJob", "reviewer")] {
        assert_eq!(
            schemas[ty]["properties"][field]["$ref"], "#/components/schemas/Author",
            "{ty}"
        );
    }
    assert_eq!(schemas["Author"]["properties"]["name"]["type"], "string");
    // A payload type without a schema is listed, schema-less.
    assert_eq!(messages["Raw"]["name"], "Raw");
    assert!(messages["Raw"]["payload"].is_null());
    assert!(messages["DeadLetter"]["payload"].is_null());
}

#[tokio::test]
async fn jetwire_asyncapi_writes_the_document_without_connecting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("asyncapi.json");
    // Nothing listens on port 1: connecting would fail.
    let config = Config::builder()
        .url("nats://127.0.0.1:1")
        .app("docs")
        .asyncapi(&path)
        .build()
        .expect("valid");
    App::new(config)
        .only(&HANDLERS)
        .run()
        .await
        .expect("writes and returns");
    let text = std::fs::read_to_string(&path).expect("written");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_valid(&doc);
    assert_eq!(doc["operations"].as_object().map(|o| o.len()), Some(4));

    let bad = Config::builder()
        .app("docs")
        .asyncapi(dir.path().join("missing-dir/asyncapi.json"))
        .build()
        .expect("valid");
    let err = App::new(bad)
        .only(&HANDLERS)
        .run()
        .await
        .expect_err("cannot write");
    assert!(err.to_string().contains("JETWIRE_ASYNCAPI"), "{err}");
}

#[test]
fn the_schema_check_refuses_a_broken_document() {
    let mut doc = app().asyncapi();
    doc["operations"]["docs_job"]["action"] = "consume".into();
    let refused = std::panic::catch_unwind(|| assert_valid(&doc));
    assert!(refused.is_err(), "an operation's action is send or receive");
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct DocMoved {
    id: u64,
    to: String,
}

/// Given in code: no attribute, so its schema is named in its options.
async fn docs_configured(_doc: DocMoved) -> Result<(), HandlerError> {
    Ok(())
}

#[test]
fn a_handler_from_configuration_is_described_with_the_schema_it_names() {
    let doc = app()
        .subscribe_with(
            "docs.configured",
            docs_configured,
            jetwire::HandlerOptions::new().schema::<DocMoved>(),
        )
        .asyncapi();
    assert_valid(&doc);
    let op = &doc["operations"]["docs_configured"];
    assert_eq!(op["x-jetwire"]["kind"], "subscribe", "{doc}");
    assert_eq!(op["channel"]["$ref"], "#/channels/docs.configured", "{doc}");
    let message = &doc["components"]["messages"]["DocMoved"];
    assert_eq!(message["payload"]["$ref"], "#/components/schemas/DocMoved");
    assert!(
        doc["components"]["schemas"]["DocMoved"].is_object(),
        "{doc}"
    );

    let without = app()
        .subscribe("docs.configured", docs_configured)
        .asyncapi();
    assert_valid(&without);
    let message = &without["components"]["messages"]["DocMoved"];
    assert!(
        message.get("payload").is_none(),
        "no schema named: {message}"
    );
}

#[queue("queue.docs.packed")]
async fn docs_packed(_job: jetwire::codec::MsgPack<DocJob>) -> Result<(), HandlerError> {
    Ok(())
}

#[queue("queue.docs.versioned")]
async fn docs_versioned(_job: jetwire::Envelope<DocJob>) -> Result<(), HandlerError> {
    Ok(())
}

#[test]
fn each_message_has_its_codecs_content_type_and_schema() {
    let config = Config::builder().app("docs").build().expect("valid");
    let doc = App::new(config)
        .only(&["docs_packed", "docs_raw", "docs_job", "docs_versioned"])
        .asyncapi();
    assert_valid(&doc);
    let messages = &doc["components"]["messages"];
    let content_type = |name: &str| messages[name]["contentType"].clone();
    assert_eq!(
        content_type("MsgPack_DocJob_"),
        "application/msgpack",
        "{messages}"
    );
    assert_eq!(content_type("DocJob"), "application/json", "{messages}");
    assert_eq!(
        content_type("Raw"),
        "application/octet-stream",
        "{messages}"
    );
}
