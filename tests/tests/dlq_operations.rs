//! Dead letters as an operation, against a real server: list with each
//! filter, get, replay once a bug is fixed, replay twice, replay to a
//! subject whose stream is gone, purge by filter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use jetwire::dlq::{DeadLetters, Filter};
use jetwire::{App, Config, DlqReason, HandlerError, PublishOptions, State, queue, subscribe};
use jetwire_tests::{eventually, shared_server, stream_messages, unique_prefix};

#[subscribe("ops.created", max_deliver = 1)]
async fn ops_event(n: u64) -> Result<(), HandlerError> {
    match n % 2 {
        0 => Err(HandlerError::permanent(format!("refused {n}"))),
        _ => Err(HandlerError::transient(format!("flaky {n}"))),
    }
}

/// Whether the bug is fixed; how many jobs ran to the end.
#[derive(Clone, Default)]
struct Fix(Arc<AtomicBool>, Arc<AtomicU64>);

#[queue("queue.opsjob")]
async fn ops_job(_n: u64, fix: State<Fix>) -> Result<(), HandlerError> {
    if !fix.0.0.load(Ordering::SeqCst) {
        return Err(HandlerError::permanent("the bug"));
    }
    fix.0.1.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

async fn started(prefix: &str, fix: &Fix) -> jetwire::RunningApp {
    let config = Config::builder()
        .url(shared_server().url())
        .app("ops")
        .subject_prefix(prefix)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("valid");
    App::new(config)
        .only(&["ops_event", "ops_job"])
        .state(fix.clone())
        .start()
        .await
        .expect("starts")
}

fn seqs(letters: &[jetwire::dlq::DeadLetter]) -> Vec<u64> {
    letters.iter().map(|l| l.sequence()).collect()
}

#[tokio::test]
async fn list_get_replay_and_purge() {
    let prefix = unique_prefix("ops");
    let fix = Fix::default();
    let running = started(&prefix, &fix).await;
    let publisher = running.publisher();
    for n in 0..6u64 {
        publisher.publish("ops.created", &n).await.expect("publish");
    }
    publisher
        .publish_raw("ops.created", "not json", PublishOptions::new())
        .await
        .expect("publish");
    let before_jobs = SystemTime::now();
    for n in 0..4u64 {
        publisher
            .publish("queue.opsjob", &n)
            .await
            .expect("publish");
    }
    let dlq: DeadLetters = running.dead_letters();
    let all = eventually(Duration::from_secs(20), "11 letters", || async {
        let l = dlq.list(&Filter::new()).await.expect("list");
        (l.len() == 11).then_some(l)
    })
    .await;
    let count = |f: Filter| {
        let dlq = dlq.clone();
        async move { dlq.list(&f).await.expect("list").len() }
    };
    assert_eq!(
        count(Filter::new().reason(DlqReason::Permanent)).await,
        3 + 4
    );
    assert_eq!(count(Filter::new().reason(DlqReason::Exhausted)).await, 3);
    assert_eq!(count(Filter::new().reason(DlqReason::Decode)).await, 1);
    assert_eq!(count(Filter::new().handler("ops_job")).await, 4);
    assert_eq!(count(Filter::new().subject("queue.opsjob")).await, 4);
    assert_eq!(count(Filter::new().subject("ops.*")).await, 7);
    assert_eq!(
        count(Filter::new().since(before_jobs).subject("queue.opsjob")).await,
        4
    );
    assert_eq!(count(Filter::new().limit(5)).await, 5);
    let sorted = {
        let mut s = seqs(&all);
        s.sort_unstable();
        s
    };
    assert_eq!(seqs(&all), sorted, "oldest first");

    // One letter, read back whole.
    let job = dlq
        .list(&Filter::new().handler("ops_job").limit(1))
        .await
        .expect("list")
        .remove(0);
    let again = dlq.get(job.sequence()).await.expect("get");
    assert_eq!(again.subject(), "queue.opsjob");
    assert_eq!(again.reason(), Some(DlqReason::Permanent));
    assert_eq!(again.error(), Some("the bug"));
    assert_eq!(again.decode::<u64>().expect("json"), 0);
    assert!(again.original_sequence().is_some());

    // The bug is fixed: its letters go back, are handled once, and are gone.
    fix.0.store(true, Ordering::SeqCst);
    let replayed = dlq
        .replay_all(&Filter::new().handler("ops_job"))
        .await
        .expect("replay");
    assert_eq!(replayed, 4);
    eventually(Duration::from_secs(20), "4 jobs done", || async {
        (fix.1.load(Ordering::SeqCst) == 4).then_some(())
    })
    .await;
    assert_eq!(count(Filter::new().handler("ops_job")).await, 0);

    // Purge by filter removes only those.
    assert_eq!(
        dlq.purge(&Filter::new().reason(DlqReason::Exhausted))
            .await
            .expect("purge"),
        3
    );
    assert_eq!(count(Filter::new()).await, 4);
    assert_eq!(count(Filter::new().reason(DlqReason::Permanent)).await, 3);
    let err = dlq
        .get(999_999)
        .await
        .expect_err("no such letter")
        .to_string();
    assert!(err.contains("no such letter"), "{err}");
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_letter_replayed_twice_is_stored_once_and_a_failed_replay_keeps_it() {
    let prefix = unique_prefix("ops-twice");
    let fix = Fix::default();
    let running = started(&prefix, &fix).await;
    let publisher = running.publisher();
    publisher
        .publish("queue.opsjob", &1u64)
        .await
        .expect("publish");
    let dlq = running.dead_letters();
    let letter = eventually(Duration::from_secs(20), "a letter", || async {
        dlq.list(&Filter::new()).await.expect("list").pop()
    })
    .await;
    // Stop the handler so the replays stay in the stream to be counted.
    running.shutdown().await.expect("shutdown");
    let client = publisher.client().clone();
    let (a, b) = tokio::join!(dlq.replay(letter.sequence()), dlq.replay(letter.sequence()));
    assert!(a.is_ok() || b.is_ok(), "{a:?} {b:?}");
    let queue = jetwire::topology::queue_stream(Some(&prefix));
    let replays: Vec<_> = stream_messages(&client, &queue)
        .await
        .into_iter()
        .filter(|m| m.headers.get("Jetwire-Replayed-From").is_some())
        .collect();
    assert_eq!(replays.len(), 1, "stored {} times", replays.len());
    let id = replays[0]
        .headers
        .get("Nats-Msg-Id")
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert!(
        id.starts_with(&format!(
            "replay:{}:{}:",
            dlq.stream_name(),
            letter.sequence()
        )),
        "{id}"
    );
    assert!(replays[0].headers.get("Jetwire-Dlq-Reason").is_none());

    // A letter whose subject no stream captures any more stays.
    publisher
        .publish("ops.created", &2u64)
        .await
        .expect("publish");
    let running = started(&prefix, &fix).await;
    let event = eventually(Duration::from_secs(20), "an event letter", || async {
        dlq.list(&Filter::new().handler("ops_event"))
            .await
            .expect("list")
            .pop()
    })
    .await;
    running.shutdown().await.expect("shutdown");
    let js = jetwire::async_nats::jetstream::new(client.clone());
    js.delete_stream(jetwire::topology::default_stream(
        Some(&prefix),
        "ops.created",
    ))
    .await
    .expect("delete the stream");
    let err = dlq
        .replay(event.sequence())
        .await
        .expect_err("no stream")
        .to_string();
    assert!(err.contains("not replayed, and kept"), "{err}");
    dlq.get(event.sequence())
        .await
        .expect("the letter is still there");
}

#[subscribe("opsalert.created", max_deliver = 1)]
async fn alert_source(n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::permanent(format!("bad order {n}")))
}

/// What the pager saw of a letter: subject, reason, handler.
type Alert = (String, Option<DlqReason>, Option<String>);

static ALERTS: std::sync::Mutex<Vec<Alert>> = std::sync::Mutex::new(Vec::new());

#[subscribe("dlq.opsalert.created")]
async fn page_on_call(letter: jetwire::dlq::DeadLetter) -> Result<(), HandlerError> {
    ALERTS.lock().expect("lock").push((
        letter.subject().to_owned(),
        letter.reason(),
        letter.handler().map(str::to_owned),
    ));
    Ok(())
}

#[subscribe("dlq.opsalert.created", max_deliver = 2, backoff = ["10ms"])]
async fn broken_pager(_letter: jetwire::dlq::DeadLetter) -> Result<(), HandlerError> {
    Err(HandlerError::transient("the pager is down"))
}

#[tokio::test]
async fn a_dead_letter_handler_sees_each_letter_and_its_own_failures_do_not_loop() {
    let prefix = unique_prefix("ops-alert");
    let config = Config::builder()
        .url(shared_server().url())
        .app("ops")
        .subject_prefix(&prefix)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("valid");
    let running = App::new(config)
        .only(&["alert_source", "page_on_call", "broken_pager"])
        .start()
        .await
        .expect("starts");
    for n in 0..3u64 {
        running
            .publisher()
            .publish("opsalert.created", &n)
            .await
            .expect("publish");
    }
    let stats = eventually(
        Duration::from_secs(20),
        "3 alerts, 3 pager give-ups",
        || async {
            let s = running.stats();
            let pager = s.iter().find(|h| h.handler == "broken_pager")?.clone();
            (ALERTS.lock().expect("lock").len() == 3 && pager.dead_lettered == 3).then_some(pager)
        },
    )
    .await;
    assert_eq!(
        stats.received, 6,
        "each letter tried twice by the broken pager"
    );
    for (subject, reason, handler) in ALERTS.lock().expect("lock").iter() {
        assert_eq!(subject, "opsalert.created");
        assert_eq!(*reason, Some(DlqReason::Permanent));
        assert_eq!(handler.as_deref(), Some("alert_source"));
    }
    // No letter about a letter, and the three letters are still there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let letters = running
        .dead_letters()
        .list(&Filter::new())
        .await
        .expect("list");
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert!(letters.iter().all(|l| l.subject() == "opsalert.created"));
    running.shutdown().await.expect("shutdown");
}

static STILL_BROKEN_RUNS: AtomicU64 = AtomicU64::new(0);

#[queue("queue.opsbroken")]
async fn still_broken(_n: u64) -> Result<(), HandlerError> {
    STILL_BROKEN_RUNS.fetch_add(1, Ordering::SeqCst);
    Err(HandlerError::permanent("still broken"))
}

/// `replay_all` and `purge` act on the letters there when they began: a
/// replay that fails again is a new letter the same call leaves alone, so
/// it ends with one run per letter; a purge leaves letters that arrived
/// while it ran. Filters hold with sequences too.
#[tokio::test]
#[allow(clippy::print_stdout)]
async fn replay_all_and_purge_touch_only_the_letters_there_when_they_began() {
    let prefix = unique_prefix("ops-snap");
    let config = Config::builder()
        .url(shared_server().url())
        .app("ops")
        .subject_prefix(&prefix)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("valid");
    let running = App::new(config)
        .only(&["still_broken"])
        .start()
        .await
        .expect("starts");
    let publisher = running.publisher();
    for n in 0..10u64 {
        publisher
            .publish("queue.opsbroken", &n)
            .await
            .expect("publish");
    }
    let dlq = running.dead_letters();
    let broken = Filter::new().handler("still_broken");
    eventually(Duration::from_secs(20), "10 letters", || async {
        (dlq.list(&broken).await.expect("list").len() == 10).then_some(())
    })
    .await;
    let runs_before = STILL_BROKEN_RUNS.load(Ordering::SeqCst);
    assert_eq!(runs_before, 10);
    let replayed = tokio::time::timeout(Duration::from_secs(30), dlq.replay_all(&broken))
        .await
        .expect("replay_all ends")
        .expect("replays");
    assert_eq!(replayed, 10, "each letter replayed once");
    eventually(
        Duration::from_secs(20),
        "the replays failed again",
        || async { (dlq.list(&broken).await.expect("list").len() == 10).then_some(()) },
    )
    .await;
    assert_eq!(
        STILL_BROKEN_RUNS.load(Ordering::SeqCst) - runs_before,
        10,
        "one run per replayed letter"
    );

    // A purge while letters keep arriving deletes only the ones it could
    // see: a purge that chased the live end would delete them all, since
    // letters arrive faster than it deletes them.
    let js = jetwire::async_nats::jetstream::new(publisher.client().clone());
    let letter_subject = format!("{prefix}.dlq.queue.opsinflow");
    for n in 0..300u64 {
        js.publish(letter_subject.clone(), n.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    let inflow = {
        let (js, subject) = (js.clone(), letter_subject.clone());
        tokio::spawn(async move {
            for n in 0..3000u64 {
                js.publish(subject.clone(), n.to_string().into())
                    .await
                    .expect("publish")
                    .await
                    .expect("stored");
            }
        })
    };
    let purged = dlq.purge(&Filter::new()).await.expect("purge");
    inflow.await.expect("published");
    let (remaining, _) = dlq.count().await.expect("count");
    println!("purge during inflow: purged {purged}, {remaining} arrived later and stayed");
    assert!(
        purged >= 310,
        "every letter there at the start purged: {purged}"
    );
    assert_eq!(purged + remaining, 3310, "nothing else went");
    assert!(
        remaining >= 1000,
        "purged {purged}: letters that arrived meanwhile went too"
    );
    let kept = dlq.list(&Filter::new().limit(3)).await.expect("list");

    // Sequences with a filter: only those that pass it.
    let some: Vec<u64> = kept.iter().take(3).map(|l| l.sequence()).collect();
    let other = dlq
        .purge(&Filter::new().sequences(some.clone()).handler("ops_job"))
        .await
        .expect("purge");
    assert_eq!(other, 0, "no letter of another handler purged");
    let wrong_subject = dlq
        .purge(
            &Filter::new()
                .sequences(some.clone())
                .subject("queue.opsbroken"),
        )
        .await
        .expect("purge");
    assert_eq!(wrong_subject, 0, "no letter of another subject purged");
    assert_eq!(
        dlq.purge(&Filter::new().sequences(some).subject("queue.opsinflow"))
            .await
            .expect("purge"),
        3
    );
    running.shutdown().await.expect("shutdown");
}

/// A dead-letter stream deleted and made again numbers its letters from 1
/// again: replaying the new letter #1 is not taken for a replay of the
/// old #1, and the message goes back.
#[tokio::test]
async fn a_letter_of_a_recreated_dead_letter_stream_is_replayed_not_dropped() {
    let prefix = unique_prefix("ops-again");
    let fix = Fix::default();
    let running = started(&prefix, &fix).await;
    let publisher = running.publisher();
    let client = publisher.client().clone();
    let dlq = running.dead_letters();
    publisher
        .publish("queue.opsjob", &1u64)
        .await
        .expect("publish");
    let first = eventually(Duration::from_secs(20), "letter #1", || async {
        dlq.list(&Filter::new()).await.expect("list").pop()
    })
    .await;
    running.shutdown().await.expect("shutdown");
    assert!(
        !dlq.replay(first.sequence())
            .await
            .expect("replayed")
            .duplicate
    );
    let js = jetwire::async_nats::jetstream::new(client.clone());
    js.delete_stream(dlq.stream_name()).await.expect("deleted");

    // The replayed job fails again: letter #1 of the new stream.
    let running = started(&prefix, &fix).await;
    let again = eventually(Duration::from_secs(20), "a new letter", || async {
        dlq.list(&Filter::new()).await.expect("list").pop()
    })
    .await;
    running.shutdown().await.expect("shutdown");
    assert_eq!(again.sequence(), first.sequence(), "numbered from 1 again");
    let receipt = dlq.replay(again.sequence()).await.expect("replayed");
    assert!(!receipt.duplicate, "taken for the old letter's replay");
    let queue = jetwire::topology::queue_stream(Some(&prefix));
    let replays = stream_messages(&client, &queue)
        .await
        .into_iter()
        .filter(|m| m.headers.get("Jetwire-Replayed-From").is_some())
        .count();
    assert_eq!(replays, 1, "the job is back in its stream");
}

static FAN_IDS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[subscribe("opsfan.created")]
async fn fan_ok(_n: u64, ctx: jetwire::Context) -> Result<(), HandlerError> {
    FAN_IDS
        .lock()
        .expect("lock")
        .push(ctx.message_id().to_owned());
    Ok(())
}

#[subscribe("opsfan.created", max_deliver = 1)]
async fn fan_broken(_n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("broken"))
}

/// A replayed event reaches every app that reads its subject; the apps
/// that handled the original see the original's id, and can tell it.
#[tokio::test]
async fn a_replayed_event_keeps_its_original_id_for_every_app() {
    let prefix = unique_prefix("ops-fan");
    let app = |name: &str, handler: &'static str| {
        App::new(jetwire_tests::config(shared_server(), &prefix, name))
            .only(&[handler])
            .start()
    };
    let ok = app("billing", "fan_ok").await.expect("starts");
    let broken = app("audit", "fan_broken").await.expect("starts");
    ok.publisher()
        .publish_with(
            "opsfan.created",
            &1u64,
            PublishOptions::new().message_id("order-1"),
        )
        .await
        .expect("publish");
    let dlq = broken.dead_letters();
    let letter = eventually(Duration::from_secs(20), "audit's letter", || async {
        dlq.list(&Filter::new()).await.expect("list").pop()
    })
    .await;
    dlq.replay(letter.sequence()).await.expect("replayed");
    eventually(
        Duration::from_secs(20),
        "billing saw the replay",
        || async { (FAN_IDS.lock().expect("lock").len() == 2).then_some(()) },
    )
    .await;
    assert_eq!(
        *FAN_IDS.lock().expect("lock"),
        vec!["order-1".to_owned(), "order-1".to_owned()],
        "the replay came under another id"
    );
    ok.shutdown().await.expect("stops");
    broken.shutdown().await.expect("stops");
}
