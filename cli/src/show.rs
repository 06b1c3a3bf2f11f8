//! Output: tables that fit a terminal (previews cut, times relative), or
//! one JSON document for scripts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use jetwire::directory::Worker;
use jetwire::dlq::DeadLetter;
use jetwire::topology::Status;

/// A short preview of `text`: one line, at most `n` characters.
fn cut(text: &str, n: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() <= n {
        return line;
    }
    let mut out: String = line.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Outside text as it may reach a terminal: every control character
/// (an escape sequence's ESC, a bell, a carriage return) written out as
/// `\x1b`, so a letter or a forged directory record cannot drive the
/// operator's terminal; with `lines`, line breaks and tabs stay.
pub(crate) fn safe(text: &str, lines: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && !(lines && (c == '\n' || c == '\t')) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`.
fn ago(t: SystemTime) -> String {
    let d = SystemTime::now()
        .duration_since(t)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        3600..86_400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// A table as wide as the terminal, or as `COLUMNS` (120) when the
/// output is not one.
fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(120);
        t.set_width(width);
    }
    t
}

pub(crate) fn letter_json(l: &DeadLetter, with_body: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "seq": l.sequence(),
        "subject": l.subject(),
        "reason": l.reason().map(|r| r.as_str()),
        "handler": l.handler(),
        "error": l.error(),
        "attempts": l.attempts(),
        "failed_at_ms": unix_ms(l.failed_at()) as u64,
        "original_stream": l.original_stream(),
        "original_sequence": l.original_sequence(),
        "message_id": l.message_id(),
    });
    if with_body {
        let headers: Vec<(String, String)> = l
            .headers()
            .iter()
            .flat_map(|(k, vs)| {
                let k: &str = k.as_ref();
                vs.iter().map(move |v| (k.to_owned(), v.to_string()))
            })
            .collect();
        v["headers"] = serde_json::json!(headers);
        v["payload"] = match l.payload_as_json() {
            Some(json) => json,
            None => serde_json::json!(String::from_utf8_lossy(l.payload())),
        };
    }
    v
}

#[allow(clippy::print_stdout)]
pub(crate) fn letters(letters: &[DeadLetter], json: bool) {
    if json {
        let all: Vec<_> = letters.iter().map(|l| letter_json(l, false)).collect();
        println!("{}", serde_json::json!({ "letters": all }));
        return;
    }
    if letters.is_empty() {
        println!("no dead letters");
        return;
    }
    let mut t = table(&[
        "seq", "failed", "subject", "reason", "handler", "runs", "error", "payload",
    ]);
    for l in letters {
        t.add_row(vec![
            l.sequence().to_string(),
            ago(l.failed_at()),
            safe(l.subject(), false),
            l.reason().map_or("-", |r| r.as_str()).to_owned(),
            safe(l.handler().unwrap_or("-"), false),
            l.attempts().map_or("-".into(), |a| a.to_string()),
            cut(l.error().unwrap_or(""), 40),
            cut(&String::from_utf8_lossy(l.payload()), 30),
        ]);
    }
    println!("{t}");
}

#[allow(clippy::print_stdout)]
pub(crate) fn letter(l: &DeadLetter, json: bool) {
    if json {
        println!("{}", letter_json(l, true));
        return;
    }
    let mut t = table(&["header", "value"]);
    let mut rows: Vec<(String, String)> = l
        .headers()
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string())))
        .collect();
    rows.sort();
    for (k, v) in rows {
        t.add_row(vec![safe(&k, false), safe(&v, false)]);
    }
    println!(
        "letter #{} of {} ({})",
        l.sequence(),
        safe(l.subject(), false),
        ago(l.failed_at())
    );
    println!("{t}");
    match (l.payload_as_json(), std::str::from_utf8(l.payload())) {
        (Some(v), _) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
        (None, Ok(text)) => println!("{}", safe(text, true)),
        (None, Err(_)) => println!(
            "({} bytes of {}, not text)",
            l.payload().len(),
            safe(l.content_type().unwrap_or("unknown content"), false)
        ),
    }
}

#[allow(clippy::print_stdout)]
pub(crate) fn status(s: &Status, json: bool) -> Result<(), jetwire::Error> {
    if json {
        let streams: Vec<_> = s
            .streams
            .iter()
            .map(|st| {
                serde_json::json!({
                    "name": st.name, "subjects": st.subjects, "messages": st.messages, "bytes": st.bytes,
                    "consumers": st.consumers.iter().map(|c| serde_json::json!({
                        "name": c.name, "pending": c.pending, "ack_pending": c.ack_pending,
                        "redelivered": c.redelivered, "waiting": c.waiting,
                        "last_active_ms": c.last_active.map(|t| unix_ms(t) as u64),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let d = &s.dead_letters;
        println!(
            "{}",
            serde_json::json!({
                "streams": streams,
                "dead_letters": {"total": d.total, "counted": d.counted, "by_reason": d.by_reason, "by_handler": d.by_handler},
            })
        );
        return Ok(());
    }
    let mut t = table(&[
        "stream", "msgs", "bytes", "durable", "pending", "unacked", "redeliv", "waiting", "active",
    ]);
    for st in &s.streams {
        if st.consumers.is_empty() {
            t.add_row(vec![
                safe(&st.name, false),
                st.messages.to_string(),
                st.bytes.to_string(),
            ]);
        }
        for c in &st.consumers {
            t.add_row(vec![
                safe(&st.name, false),
                st.messages.to_string(),
                st.bytes.to_string(),
                safe(&c.name, false),
                c.pending.to_string(),
                c.ack_pending.to_string(),
                c.redelivered.to_string(),
                c.waiting.to_string(),
                c.last_active.map_or("-".into(), ago),
            ]);
        }
    }
    println!("{t}");
    let d = &s.dead_letters;
    println!(
        "dead letters: {} (counted the latest {})",
        d.total, d.counted
    );
    for (what, map) in [("reason", &d.by_reason), ("handler", &d.by_handler)] {
        let line: Vec<String> = map
            .iter()
            .map(|(k, n)| format!("{}={n}", safe(k, false)))
            .collect();
        if !line.is_empty() {
            println!("  by {what}: {}", line.join(" "));
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
pub(crate) fn workers(workers: &[Worker], json: bool) {
    if json {
        println!("{}", serde_json::json!({ "workers": workers }));
        return;
    }
    let mut t = table(&[
        "instance", "app", "host", "pid", "version", "started", "labels", "handlers",
    ]);
    for w in workers {
        let handlers: Vec<String> = w
            .handlers
            .iter()
            .map(|h| {
                safe(
                    &format!("{} {} {} x{}", h.name, h.kind, h.subject, h.concurrency),
                    false,
                )
            })
            .collect();
        t.add_row(vec![
            safe(&w.instance, false),
            safe(&w.app, false),
            safe(&w.host, false),
            w.pid.to_string(),
            safe(w.app_version.as_deref().unwrap_or("-"), false),
            safe(&w.started_at, false),
            w.labels
                .iter()
                .map(|(k, v)| safe(&format!("{k}={v}"), false))
                .collect::<Vec<_>>()
                .join("\n"),
            handlers.join("\n"),
        ]);
    }
    println!("{t}");
    println!("{} running", workers.len());
}
