//! Bad and heavy input: slow handlers, poison payloads, hostile subjects,
//! many handlers at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jetwire::{App, PublishError, PublishOptions};
use jetwire_tests::{Ledger, Server, config, header, stream_messages, unique_prefix};

use crate::figures::{
    Figures, check, dlq_figures, line, publish_numbered, run_id, settled, wait_for,
};
use crate::handlers::{Crosstalk, HostileResults, Job, MANY, Typed, full, hostile_subjects};

pub(crate) async fn slow_handler() -> Result<String, String> {
    let server = Server::start();
    let prefix = unique_prefix("slow");
    let ledger = Ledger::connect(&run_id(), "slow-handler").await;
    let n = if full() { 200 } else { 64 };
    let app = App::new(config(&server, &prefix, "faults"))
        .only(&["fault_slow"])
        .state(ledger.clone())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    publish_numbered(&app.publisher(), "queue.fault-slow", "slow", 0..n).await;
    let f = settled(
        &ledger,
        app.publisher().client(),
        &prefix,
        n,
        Duration::from_secs(60),
        0.0,
    )
    .await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    if f.duplicates != 0 {
        return Err(format!(
            "{}: a call slower than ack_wait was redelivered",
            line("slow-handler", &f)
        ));
    }
    check("slow-handler", &f, 0)
}

pub(crate) async fn poison_corpus() -> Result<String, String> {
    // A 1 MiB payload needs a server that accepts it.
    let server = Server::start_with_config("max_payload: 8MB\n");
    let prefix = unique_prefix("poison");
    let ledger = Ledger::connect(&run_id(), "poison-corpus").await;
    let app = App::new(config(&server, &prefix, "faults"))
        .only(&["fault_typed"])
        .state(ledger.clone())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let publisher = app.publisher();
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = format!(
        "{{\"id\": 1, \"name\": \"{}\", \"tags\": []}}",
        "x".repeat(1 << 20)
    );
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("invalid json", b"{not json".to_vec()),
        (
            "wrong types",
            br#"{"id": "seven", "name": 7, "tags": "x"}"#.to_vec(),
        ),
        ("missing fields", br#"{"id": 3}"#.to_vec()),
        ("empty", Vec::new()),
        ("invalid utf-8", vec![0xff, 0xfe, b'{', 0x80]),
        ("deeply nested", nested.into_bytes()),
        (
            "1 MiB string in a wrong shape",
            format!("\"{}\"", "y".repeat(1 << 20)).into_bytes(),
        ),
        (
            "huge number",
            br#"{"id": 123456789012345678901234567890, "name": "n", "tags": []}"#.to_vec(),
        ),
        (
            "negative id",
            br#"{"id": -1, "name": "n", "tags": []}"#.to_vec(),
        ),
        ("null", b"null".to_vec()),
    ];
    let mut good = 0u64;
    for (i, (_, bytes)) in poison.iter().enumerate() {
        let ok = Typed {
            id: 1000 + i as u64,
            name: "ok".into(),
            tags: vec!["a".into()],
        };
        publisher
            .publish("queue.fault-poison", &ok)
            .await
            .map_err(|e| e.to_string())?;
        good += 1;
        publisher
            .publish_raw("queue.fault-poison", bytes.clone(), PublishOptions::new())
            .await
            .map_err(|e| format!("publishing poison {i}: {e}"))?;
    }
    // A valid 1 MiB message is handled, not refused.
    publisher
        .publish_raw(
            "queue.fault-poison",
            huge.into_bytes(),
            PublishOptions::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    good += 1;
    wait_for(&ledger, good, Duration::from_secs(60)).await?;
    let client = publisher.client().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let letters = stream_messages(&client, &jetwire_tests::dlq_stream(&prefix)).await;
        if letters.len() >= poison.len() || Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for m in &letters {
        if header(m, "Jetwire-Dlq-Reason") != Some("decode")
            || header(m, "Jetwire-Dlq-Attempts") != Some("1")
        {
            return Err(format!(
                "a poison message was dead-lettered as {:?} after {:?} attempts",
                header(m, "Jetwire-Dlq-Reason"),
                header(m, "Jetwire-Dlq-Attempts")
            ));
        }
    }
    let mut originals: Vec<Vec<u8>> = letters.iter().map(|m| m.payload.to_vec()).collect();
    let mut expected: Vec<Vec<u8>> = poison.iter().map(|(_, b)| b.clone()).collect();
    originals.sort();
    expected.sort();
    if originals != expected {
        return Err(format!(
            "the DLQ holds {} letters whose bytes are not exactly the poison set",
            letters.len()
        ));
    }
    let stats = app.stats();
    let (handled_unique, duplicates) = ledger.tally().await;
    let (dlq, dlq_duplicates) = dlq_figures(&client, &prefix).await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    if stats[0].retried != 0 {
        return Err(format!(
            "{} poison deliveries were retried instead of dead-lettered",
            stats[0].retried
        ));
    }
    let f = Figures {
        published: good + poison.len() as u64,
        handled_unique,
        duplicates,
        dlq,
        dlq_duplicates,
        recovery_s: 0.0,
    };
    check("poison-corpus", &f, poison.len() as u64)
}

pub(crate) async fn hostile_subjects_refused() -> Result<String, String> {
    let server = Server::start();
    let prefix = unique_prefix("hostile");
    let seen = HostileResults::default();
    let app = App::new(config(&server, &prefix, "faults"))
        .only(&["fault_hostile"])
        .state(seen.clone())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let publisher = app.publisher();
    let client = publisher.client().clone();
    let count_all = || async {
        let js = async_nats::jetstream::new(client.clone());
        let mut total = 0;
        let mut names = js.stream_names();
        use futures_util::StreamExt;
        while let Some(Ok(name)) = names.next().await {
            // jetwire's own buckets (the worker directory's record of this
            // app, say) hold no published message.
            if name.starts_with("KV_") {
                continue;
            }
            if let Ok(mut s) = js.get_stream(&name).await
                && let Ok(info) = s.info().await
            {
                total += info.state.messages;
            }
        }
        total
    };
    let subjects = hostile_subjects();
    for s in &subjects {
        match publisher.publish(s, &1u64).await {
            Err(PublishError::InvalidSubject(_)) => {}
            other => {
                return Err(format!(
                    "Publisher accepted hostile subject {s:?}: {other:?}"
                ));
            }
        }
    }
    publisher
        .publish("queue.fault-hostile", &1u64)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.0.lock().expect("not poisoned").len() < subjects.len() {
        if Instant::now() > deadline {
            return Err("the handler did not finish".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let accepted: Vec<String> = seen
        .0
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|(_, r)| !r)
        .map(|(s, _)| format!("{s:?}"))
        .collect();
    if !accepted.is_empty() {
        return Err(format!("Context::publish accepted {}", accepted.join(", ")));
    }
    let total = count_all().await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    // Only the one trigger message was ever stored.
    if total != 0 {
        return Err(format!(
            "{total} messages remain stored; nothing hostile may be sent"
        ));
    }
    Ok(format!(
        "fault hostile-subjects: published=1 handled_unique=1 lost=0 duplicates=0 dlq=0 recovery_s=0.00\n  refused {} hostile publishes ({} subjects through Publisher and through Context::publish)",
        subjects.len() * 2,
        subjects.len()
    ))
}

pub(crate) async fn many_handlers() -> Result<String, String> {
    let server = Server::start();
    let prefix = unique_prefix("many");
    let ledger = Ledger::connect(&run_id(), "many-handlers").await;
    let per = if full() { 1_000 } else { 300 };
    let wrong = Arc::new(Mutex::new(Vec::new()));
    let mut apps = Vec::new();
    for _ in 0..2 {
        apps.push(
            App::new(config(&server, &prefix, "faults"))
                .only(&MANY)
                .state(Crosstalk {
                    ledger: ledger.clone(),
                    wrong: wrong.clone(),
                })
                .start()
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let publisher = apps[0].publisher();
    let mut acks = Vec::new();
    for id in 0..per {
        for i in 0..10 {
            for subject in [format!("queue.many.s{i}"), format!("many.s{i}")] {
                acks.push(
                    publisher
                        .send(&subject, &Job { id })
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        if acks.len() > 2000 {
            for a in acks.drain(..) {
                a.await.map_err(|e| e.to_string())?;
            }
        }
    }
    for a in acks {
        a.await.map_err(|e| e.to_string())?;
    }
    let n = per * 20;
    let f = settled(
        &ledger,
        publisher.client(),
        &prefix,
        n,
        Duration::from_secs(120),
        0.0,
    )
    .await;
    for app in apps {
        app.shutdown().await.map_err(|e| e.to_string())?;
    }
    let wrong = wrong.lock().expect("not poisoned").clone();
    if !wrong.is_empty() {
        return Err(format!("cross-talk: {}", wrong.join(", ")));
    }
    check("many-handlers", &f, 0)
}
