//! The example's AsyncAPI document, written by the real binary with
//! `JETWIRE_ASYNCAPI` while no server runs: valid AsyncAPI 3.0.0, every
//! handler listed, payload schemas from the example's types.

use std::process::Command;

#[test]
fn jetwire_asyncapi_describes_every_handler_without_a_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orders.asyncapi.json");
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .arg("serve")
        .env("JETWIRE_ASYNCAPI", &path)
        // Nothing listens on port 1: connecting would fail.
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env("JETWIRE_APP", "orders")
        .output()
        .expect("runs");
    jetwire_tests::assert_succeeded(&out);
    let text = std::fs::read_to_string(&path).expect("written");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    jetwire_tests::asyncapi::assert_valid(&doc);
    for handler in ["bill_order", "ship_order", "send_email"] {
        assert_eq!(doc["operations"][handler]["action"], "receive", "{handler}");
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["OrderCreated"]["properties"]["order_id"]["type"],
        "integer"
    );
    assert_eq!(schemas["SendEmail"]["properties"]["to"]["type"], "string");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}
