//! One clock a test can set: letters are stamped with it, `within`
//! filters count back from it when they are used, and `TestApp`'s virtual
//! waits move it on.

use std::time::{Duration, SystemTime};

use jetwire::clock::{Clock, ManualClock};
use jetwire::dlq::{DeadLetter, Filter};
use jetwire::testing::TestApp;
use jetwire::{App, Config, HandlerError, queue};
use jetwire_tests::{eventually, shared_server, unique_prefix};

#[queue("queue.clocked", max_deliver = 3, backoff = ["1s", "5s"])]
async fn clocked(_n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::transient("always down"))
}

#[queue("queue.clockedlive", max_deliver = 1)]
async fn clocked_live(_n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("refused"))
}

/// 2023-11-14T22:13:20Z.
fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

#[tokio::test]
async fn test_app_stamps_letters_with_its_clock_moved_on_by_each_wait() {
    let clock = ManualClock::new(start());
    let app = TestApp::new().only(&["clocked"]).clock(clock.clone());
    let report = app.publish("queue.clocked", &1u64).await;
    let run = report.run("clocked").expect("ran");
    assert_eq!(
        run.delays(),
        [Duration::from_secs(1), Duration::from_secs(5)]
    );
    assert_eq!(
        clock.now(),
        start() + Duration::from_secs(6),
        "moved by both waits"
    );
    let letters = app.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].header("Jetwire-Dlq-Failed-At"),
        Some("2023-11-14T22:13:26Z"),
        "failed after 1 s and 5 s of virtual time"
    );
}

#[tokio::test]
async fn a_live_letter_is_stamped_with_the_apps_clock_and_within_counts_back_from_it() {
    let prefix = unique_prefix("clock");
    // Years behind the server: the letter's own time is the clock's,
    // and `within` compares the server's storing time with the clock.
    let day = Duration::from_secs(24 * 3600);
    let clock = ManualClock::new(start());
    let config = Config::builder()
        .url(shared_server().url())
        .app("clock")
        .subject_prefix(&prefix)
        .shutdown_timeout(Duration::from_secs(5))
        .clock(clock.clone())
        .build()
        .expect("valid");
    let running = App::new(config)
        .only(&["clocked_live"])
        .start()
        .await
        .expect("starts");
    running
        .publisher()
        .publish("queue.clockedlive", &1u64)
        .await
        .expect("published");
    let dlq = running.dead_letters();
    // Made once, used twice: the window is counted when it is used.
    let last_hour = Filter::new().within(Duration::from_secs(3600));
    let letters: Vec<DeadLetter> = eventually(Duration::from_secs(20), "the letter", || async {
        let letters = dlq.list(&last_hour).await.expect("listed");
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    let stamped = letters[0].headers().get("Jetwire-Dlq-Failed-At");
    assert_eq!(
        stamped.map(|v| v.as_str()),
        Some("2023-11-14T22:13:20Z"),
        "the clock's time, not the system's"
    );
    // A day ahead of the server now.
    clock.set(SystemTime::now() + day);
    let later = dlq.list(&last_hour).await.expect("listed");
    assert!(
        later.is_empty(),
        "a day ahead, the letter is outside the last hour"
    );
    let last_two_days = Filter::new().within(2 * day);
    assert_eq!(dlq.list(&last_two_days).await.expect("listed").len(), 1);
    running.shutdown().await.expect("clean shutdown");
}
