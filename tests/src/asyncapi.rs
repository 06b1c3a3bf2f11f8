//! Checking an AsyncAPI document against the AsyncAPI 3.0.0 JSON Schema
//! (from the pinned `@asyncapi/specs`, fetched by
//! `scripts/asyncapi-schema-path`).

use std::sync::OnceLock;

use crate::tools::installed;

/// Panics, listing every violation, unless `doc` is a valid AsyncAPI 3.0.0
/// document.
pub fn assert_valid(doc: &serde_json::Value) {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| {
        let path = installed("asyncapi-schema-path");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::draft7::new(&schema).expect("the AsyncAPI schema compiles")
    });
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a valid AsyncAPI 3.0.0 document:\n{}\n{doc:#}",
        errors.join("\n")
    );
}
