//! The AsyncAPI 3.0 document of an app's handlers: a channel per subject,
//! a receive operation per handler with its options, and payload schemas
//! where the payload type has one (feature `asyncapi`).

use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::handler::registry::{Deliver, GROUP, HandlerDef, Kind, Schemas};

/// The AsyncAPI version the document follows.
pub(crate) const VERSION: &str = "3.0.0";

/// The document describing `handlers` as `config` deploys them.
pub(crate) fn document(config: &Config, version: &str, handlers: &[&'static HandlerDef]) -> Value {
    let mut schemas = Schemas::new();
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for def in handlers {
        let channel = id(def.subject);
        let name = crate::text::short_type_name(def.payload);
        let message = id(&name);
        let mut described = json!({
            "name": name,
            "contentType": def.content_type.unwrap_or("application/octet-stream"),
        });
        if let Some(schema) = (def.schema)(&mut schemas) {
            described["payload"] = schema;
        }
        messages.entry(message.clone()).or_insert(described);
        let entry = channels.entry(channel.clone()).or_insert_with(|| {
            let mut channel = json!({
                "address": jetwire_grammar::subject::with_prefix(config.prefix(), def.subject),
                "messages": {},
            });
            if def.subject.split('.').any(|t| t == GROUP) {
                channel["parameters"] = json!({
                    "group": { "description": "one of the groups a process serves (JETWIRE_GROUPS)" }
                });
            }
            channel
        });
        entry["messages"][&message] = json!({ "$ref": format!("#/components/messages/{message}") });
        let op_id = operation_id(&operations, def);
        operations.insert(op_id.clone(), operation(config, def, &channel, &message));
        if let Some(output) = def.options.output {
            let parts = (&mut channels, &mut operations, &mut messages);
            send_output(config, parts, &op_id, output);
        }
    }
    json!({
        "asyncapi": VERSION,
        "info": {
            "title": config.app,
            "version": version,
            "description": format!("The message handlers of `{}`, served by jetwire {}.", config.app, env!("CARGO_PKG_VERSION")),
        },
        "defaultContentType": "application/json",
        "servers": servers(&config.url),
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas.definitions(),
        },
    })
}

/// One handler as a receive operation; its options in `x-jetwire`, and a
/// work queue's durable as the NATS binding's queue.
fn operation(config: &Config, def: &HandlerDef, channel: &str, message: &str) -> Value {
    let (kind, summary) = match def.kind {
        Kind::Subscribe => ("subscribe", "every service gets a copy"),
        Kind::Queue => ("queue", "a work queue: each message handled once"),
    };
    let durable = def.durable(config.prefix(), &config.app);
    let backoff: Vec<String> = def.backoff().iter().map(|d| format!("{d:?}")).collect();
    let mut op = json!({
        "action": "receive",
        "channel": { "$ref": format!("#/channels/{channel}") },
        "messages": [{ "$ref": format!("#/channels/{channel}/messages/{message}") }],
        "summary": format!("`{}`: {summary}", def.path()),
        "x-jetwire": {
            "handler": def.path(),
            "kind": kind,
            "durable": durable,
            "stream": def.stream(config.prefix()),
            "max_deliver": def.max_deliver(),
            "backoff": backoff,
            "ack_wait": format!("{:?}", def.ack_wait()),
            "concurrency": def.concurrency(),
            "timeout": def.options.timeout.map(|t| format!("{t:?}")),
            "deliver": describe(def.deliver()),
            "ack": if def.acks_first() { "first" } else { "after" },
            "bind": def.binds(),
        },
    });
    if def.kind == Kind::Queue {
        op["bindings"] = json!({ "nats": { "queue": durable, "bindingVersion": "0.1.0" } });
    }
    op
}

/// The channels, operations and messages of a document being built.
type Parts<'a> = (
    &'a mut Map<String, Value>,
    &'a mut Map<String, Value>,
    &'a mut Map<String, Value>,
);

/// A handler's `output`: a channel, and a send operation with a message
/// of its own (the `Ok` type is not described).
fn send_output(
    config: &Config,
    (channels, operations, messages): Parts<'_>,
    handler_op: &str,
    output: &str,
) {
    let channel = id(output);
    let message = format!("{handler_op}.output");
    messages.insert(
        message.clone(),
        json!({ "name": message, "contentType": "application/json" }),
    );
    let entry = channels.entry(channel.clone()).or_insert_with(|| {
        json!({
            "address": jetwire_grammar::subject::with_prefix(config.prefix(), output),
            "messages": {},
        })
    });
    entry["messages"][&message] = json!({ "$ref": format!("#/components/messages/{message}") });
    operations.insert(
        format!("{handler_op}.output"),
        json!({
            "action": "send",
            "channel": { "$ref": format!("#/channels/{channel}") },
            "messages": [{ "$ref": format!("#/channels/{channel}/messages/{message}") }],
            "summary": format!("what `{handler_op}` returns, published before its message is acked"),
        }),
    );
}

/// The servers of a URL list (credentials were taken out when the config
/// was built).
/// `deliver` as the attribute writes it.
fn describe(deliver: Deliver) -> String {
    match deliver {
        Deliver::New => "new".to_owned(),
        Deliver::All => "all".to_owned(),
        Deliver::Last => "last".to_owned(),
        Deliver::LastPerSubject => "last_per_subject".to_owned(),
        Deliver::Sequence(n) => format!("seq:{n}"),
        Deliver::Time {
            unix_seconds,
            nanos,
        } => time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(unix_seconds) * 1_000_000_000 + i128::from(nanos),
        )
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{unix_seconds}s since 1970")),
    }
}

fn servers(urls: &str) -> Value {
    let mut servers = Map::new();
    for (i, url) in urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .enumerate()
    {
        let (scheme, host) = url.split_once("://").unwrap_or(("nats", url));
        let protocol = if scheme == "tls" { "tls" } else { "nats" };
        servers.insert(
            format!("nats-{i}"),
            json!({ "host": host, "protocol": protocol }),
        );
    }
    Value::Object(servers)
}

/// A handler's operation id: its fn name, or its path where two handlers
/// share a name.
fn operation_id(taken: &Map<String, Value>, def: &HandlerDef) -> String {
    if taken.contains_key(def.name) {
        id(&def.path())
    } else {
        def.name.to_owned()
    }
}

/// What AsyncAPI allows as a key (`[A-Za-z0-9._-]`): anything else, such
/// as a wildcard or a path separator, becomes `_`.
fn id(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_only_what_asyncapi_allows() {
        assert_eq!(id("orders.*.created"), "orders._.created");
        assert_eq!(id("dlq.>"), "dlq._");
        assert_eq!(id("Vec<u8>"), "Vec_u8_");
    }

    #[test]
    fn a_server_per_url() {
        let s = servers("nats://a:4222, tls://b:4443");
        assert_eq!(s["nats-0"]["host"], "a:4222");
        assert_eq!(s["nats-1"]["protocol"], "tls");
    }

    #[test]
    fn deliver_is_written_as_the_attribute_takes_it() {
        assert_eq!(describe(Deliver::Sequence(3)), "seq:3");
        assert_eq!(describe(Deliver::LastPerSubject), "last_per_subject");
        let time = Deliver::Time {
            unix_seconds: 1_767_319_445,
            nanos: 500_000_000,
        };
        assert_eq!(describe(time), "2026-01-02T02:04:05.5Z");
    }
}
