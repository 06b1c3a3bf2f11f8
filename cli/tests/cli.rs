//! The real `jetwire` binary against a real nats-server: exit codes, JSON
//! that parses, `--dry-run` that changes nothing, confirmation, and a
//! missing server named in one line.

use std::process::{Command, Output};
use std::time::Duration;

use jetwire::{App, Config, HandlerError, subscribe};
use jetwire_tests::{eventually, shared_server, unique_prefix};

#[subscribe("clipoison.created", max_deliver = 1)]
async fn cli_poison(n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::permanent(format!("poison {n}")))
}

fn jetwire(prefix: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jetwire"))
        .args(args)
        .env("NATS_URL", shared_server().url())
        .env("JETWIRE_SUBJECT_PREFIX", prefix)
        .env_remove("NATS_CONTEXT")
        .output()
        .expect("run jetwire")
}

/// Runs `jetwire args` on a pseudo-terminal (util-linux `script`), typing
/// `typed`; what the terminal showed.
fn on_terminal(prefix: &str, args: &[&str], typed: &str) -> String {
    use std::io::Write;
    let line = std::iter::once(env!("CARGO_BIN_EXE_jetwire"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("NATS_URL", shared_server().url())
        .env("JETWIRE_SUBJECT_PREFIX", prefix)
        .env_remove("NATS_CONTEXT")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(typed.as_bytes()).expect("typed");
    drop(stdin);
    let out = child.wait_with_output().expect("ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn count(prefix: &str) -> usize {
    json(&jetwire(prefix, &["dlq", "ls", "--json"]))["letters"]
        .as_array()
        .expect("letters")
        .len()
}

#[test]
fn a_missing_server_is_one_line_naming_nats_url_and_bad_usage_is_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_jetwire"))
        .args(["dlq", "ls"])
        .env("NATS_URL", "nats://127.0.0.1:1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("NATS_URL"), "{err}");
    // An app in memory has nothing this process could read.
    let out = Command::new(env!("CARGO_BIN_EXE_jetwire"))
        .args(["status"])
        .env("NATS_URL", "memory://")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("NATS_URL=memory://") && err.contains("nats-server"),
        "{err}"
    );
    let out = jetwire("x", &["dlq", "replay"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = jetwire("x", &["dlq", "ls", "--reason", "sunspots"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn server_flag_wins_over_nats_url_and_since_takes_milliseconds() {
    // NATS_URL names a closed port; --server the running server.
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_jetwire"))
            .args(args)
            .env("NATS_URL", "nats://127.0.0.1:1")
            .env("JETWIRE_SUBJECT_PREFIX", unique_prefix("cliflag"))
            .env_remove("NATS_CONTEXT")
            .output()
            .expect("run jetwire")
    };
    let url = shared_server().url();
    // Connected: the dead-letter stream of this prefix is not there.
    let out = run(&["dlq", "ls", "--server", &url, "--since", "500ms"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stream not found"), "{err}");
    let out = run(&["status", "--json", "-s", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let out = run(&["dlq", "ls", "--since", "500ms"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NATS_URL"),
        "without --server, NATS_URL's closed port: {err}"
    );
    let out = run(&["dlq", "ls", "--server", &url, "--since", "5"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("5s"), "says what to write: {err}");
}

#[tokio::test]
async fn list_show_replay_purge_and_status_from_the_binary() {
    let prefix = unique_prefix("cli");
    let config = Config::builder()
        .url(shared_server().url())
        .app("cli")
        .subject_prefix(&prefix)
        .build()
        .expect("valid");
    let running = App::new(config)
        .only(&["cli_poison"])
        .label("zone", "b")
        .start()
        .await
        .expect("starts");
    for n in 0..5u64 {
        running
            .publisher()
            .publish("clipoison.created", &n)
            .await
            .expect("publish");
    }
    let dlq = running.dead_letters();
    eventually(Duration::from_secs(20), "5 letters", || async {
        (dlq.list(&jetwire::dlq::Filter::new())
            .await
            .expect("list")
            .len()
            == 5)
            .then_some(())
    })
    .await;
    let p = prefix.as_str();
    // The app serving the letters is in the worker directory.
    let workers = json(&jetwire(p, &["workers", "--json"]));
    let workers = workers["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0]["pid"], std::process::id());
    assert_eq!(workers[0]["handlers"][0]["name"], "cli_poison");
    assert_eq!(workers[0]["labels"]["zone"], "b");
    let table = jetwire(p, &["workers"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("1 running") && table.contains("zone=b"),
        "{table}"
    );
    running.shutdown().await.expect("shutdown");

    let ls = json(&jetwire(
        p,
        &[
            "dlq",
            "ls",
            "--json",
            "--reason",
            "permanent",
            "--limit",
            "2",
        ],
    ));
    let letters = ls["letters"].as_array().expect("letters");
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["handler"], "cli_poison");
    let seq = letters[0]["seq"].as_u64().expect("seq");
    let table = jetwire(p, &["dlq", "ls"]);
    assert!(table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains("clipoison.created"));

    let shown = json(&jetwire(p, &["dlq", "show", &seq.to_string(), "--json"]));
    assert_eq!(shown["payload"], 0);
    assert_eq!(shown["error"], "poison 0");

    let dry = jetwire(p, &["dlq", "replay", "--all", "--dry-run", "--json"]);
    assert_eq!(json(&dry)["letters"].as_array().expect("letters").len(), 5);
    assert_eq!(count(p), 5, "--dry-run changed something");

    let unconfirmed = jetwire(p, &["dlq", "purge", "--all"]);
    assert_eq!(unconfirmed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("--yes"));
    assert_eq!(count(p), 5);

    purge_asks_first(p, seq);

    let replayed = json(&jetwire(p, &["dlq", "replay", "--all", "--yes", "--json"]));
    assert_eq!(replayed["count"], 4);
    assert_eq!(count(p), 0, "replayed letters are deleted");

    let status = json(&jetwire(p, &["status", "--json"]));
    let streams = status["streams"].as_array().expect("streams");
    let names: Vec<&str> = streams.iter().filter_map(|s| s["name"].as_str()).collect();
    let dlq_name = jetwire::topology::dlq_stream(Some(p));
    assert!(names.contains(&dlq_name.as_str()), "{names:?}");
    let durables: Vec<&str> = streams
        .iter()
        .flat_map(|s| s["consumers"].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        durables.iter().any(|d| d.ends_with("cli-cli_poison")),
        "{durables:?}"
    );
    assert!(jetwire(p, &["status"]).status.success());

    // Shutdown removed the app from the worker directory.
    let after = json(&jetwire(p, &["workers", "--json"]));
    assert_eq!(after["workers"].as_array().map(Vec::len), Some(0));
}

/// Purging sequences asks, as `--all` does; filters hold with sequences;
/// on a terminal `n` keeps the letter and `y` purges it.
fn purge_asks_first(p: &str, seq: u64) {
    // Purging sequences asks too; filters hold with sequences.
    let unconfirmed = jetwire(p, &["dlq", "purge", &seq.to_string()]);
    assert_eq!(unconfirmed.status.code(), Some(1));
    assert_eq!(count(p), 5);
    let other = json(&jetwire(
        p,
        &[
            "dlq",
            "purge",
            &seq.to_string(),
            "--handler",
            "other",
            "--yes",
            "--json",
        ],
    ));
    assert_eq!(other["count"], 0, "a letter of another handler purged");
    assert_eq!(count(p), 5);
    // Asked on a terminal: `n` keeps it, `y` purges it.
    assert!(!on_terminal(p, &["dlq", "purge", &seq.to_string()], "n\n").contains("purged 1"));
    assert_eq!(count(p), 5, "purged without a yes");
    let said = on_terminal(p, &["dlq", "purge", &seq.to_string()], "y\n");
    assert!(said.contains("purge 1 letter(s)? [y/N]"), "{said}");
    assert!(said.contains("purged 1 letter(s)"), "{said}");
    assert_eq!(count(p), 4);
}

#[subscribe("cliansi.created", max_deliver = 1)]
async fn cli_ansi(_n: u64) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("refused \u{1b}[31mred\u{1b}[0m"))
}

/// A letter is outside text: escape sequences in its payload, headers and
/// error reach the operator's terminal written out, never as bytes.
#[tokio::test]
async fn letters_reach_the_terminal_without_control_bytes() {
    let prefix = unique_prefix("cliansi");
    let config = Config::builder()
        .url(shared_server().url())
        .app("cli")
        .subject_prefix(&prefix)
        .build()
        .expect("valid");
    let running = App::new(config)
        .only(&["cli_ansi"])
        .start()
        .await
        .expect("starts");
    running
        .publisher()
        .publish_raw(
            "cliansi.created",
            "\u{1b}]52;c;aGk=\u{7}\u{1b}[2J not json",
            jetwire::PublishOptions::new().header("X-Note", "\u{1b}[2Jcleared"),
        )
        .await
        .expect("publish");
    let dlq = running.dead_letters();
    let letter = eventually(Duration::from_secs(20), "a letter", || async {
        dlq.list(&jetwire::dlq::Filter::new())
            .await
            .expect("list")
            .pop()
    })
    .await;
    running.shutdown().await.expect("shutdown");
    let seq = letter.sequence().to_string();
    for args in [
        vec!["dlq", "show", seq.as_str()],
        vec!["dlq", "ls"],
        vec!["status"],
        vec!["workers"],
    ] {
        let out = jetwire(&prefix, &args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bad: Vec<u8> = out
            .stdout
            .iter()
            .copied()
            .filter(|b| *b < 0x20 && *b != b'\n')
            .collect();
        assert!(bad.is_empty(), "{args:?} printed control bytes {bad:?}");
    }
    let shown =
        String::from_utf8_lossy(&jetwire(&prefix, &["dlq", "show", &seq]).stdout).into_owned();
    assert!(shown.contains("\\u{1b}[2J"), "{shown}");
}

const CLI_PASSWORD: &str = "cli,S3cr@t:pw";
/// A case: its name, its variables, and whether it connects.
type Case = (&'static str, Vec<(&'static str, String)>, bool);
const CLI_WRONG: &str = "Wr0ng-cli-S3cret";

/// Every command, connecting with a password and failing with a wrong
/// one (in the URL, with a raw comma, and in `NATS_PASSWORD`): neither
/// password shows on stdout or stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_on_stdout_or_stderr() {
    let server = jetwire_tests::Server::start_with_config(&format!(
        "authorization {{ users = [ {{ user: cli, password: \"{CLI_PASSWORD}\" }} ] }}"
    ));
    let host = server.url().replace("nats://", "");
    let prefix = unique_prefix("clisecret");
    // An app makes the deployment's streams, the dead-letter one included.
    let config = Config::builder()
        .url(format!("nats://cli:{CLI_PASSWORD}@{host}"))
        .subject_prefix(&prefix)
        .app("clisecret")
        .build()
        .expect("valid");
    let app = App::new(config).only(&[]).start().await.expect("starts");
    let run = |vars: &[(&str, String)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jetwire"));
        cmd.args(args)
            .env_remove("NATS_CONTEXT")
            .env_remove("NATS_USER")
            .env_remove("NATS_PASSWORD")
            .env("JETWIRE_SUBJECT_PREFIX", &prefix);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().expect("run jetwire")
    };
    let cases: [Case; 4] = [
        (
            "password in the URL",
            vec![("NATS_URL", format!("nats://cli:{CLI_PASSWORD}@{host}"))],
            true,
        ),
        (
            "scheme-less URL with a comma in the password",
            vec![("NATS_URL", format!("cli:{CLI_PASSWORD}@{host}"))],
            true,
        ),
        (
            "NATS_PASSWORD",
            vec![
                ("NATS_URL", server.url()),
                ("NATS_USER", "cli".to_owned()),
                ("NATS_PASSWORD", CLI_PASSWORD.to_owned()),
            ],
            true,
        ),
        (
            "a wrong password",
            vec![("NATS_URL", format!("nats://cli:{CLI_WRONG}@{host}"))],
            false,
        ),
    ];
    let mut leaks = Vec::new();
    for (name, vars, connects) in &cases {
        for args in [
            &["status"][..],
            &["workers"],
            &["dlq", "ls"],
            &["dlq", "purge", "--all", "--dry-run"],
        ] {
            let out = run(vars, args);
            assert_eq!(
                out.status.success(),
                *connects,
                "{name}, {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if !connects {
                assert!(!out.stderr.is_empty(), "{name}, {args:?}: no error shown");
            }
            let printed = [out.stdout, out.stderr].concat();
            let printed = String::from_utf8_lossy(&printed);
            for secret in [CLI_PASSWORD, CLI_WRONG, "S3cr@t", "Wr0ng"] {
                if printed.contains(secret) {
                    leaks.push(format!("{name}, {args:?}: `{secret}` in\n{printed}"));
                }
            }
        }
    }
    app.shutdown().await.expect("shutdown");
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// Stores `n` letters in the dead-letter stream of `prefix`, pipelined.
async fn store_letters(client: &jetwire::async_nats::Client, prefix: &str, from: u64, n: u64) {
    let js = jetwire::async_nats::jetstream::new(client.clone());
    let mut acks = Vec::new();
    for i in from..from + n {
        let mut headers = jetwire::async_nats::HeaderMap::new();
        headers.insert(jetwire::dlq::REASON, "permanent");
        headers.insert(jetwire::dlq::HANDLER, "scaled");
        headers.insert(jetwire::dlq::ERROR, "an error a letter carries");
        headers.insert("Nats-Msg-Id", format!("scale-{i}").as_str());
        let subject = format!("{prefix}.dlq.queue.scale");
        let payload = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(100));
        acks.push(
            js.publish_with_headers(subject, headers, payload.into())
                .await
                .expect("sent"),
        );
        if acks.len() == 1000 {
            for ack in acks.drain(..) {
                ack.await.expect("stored");
            }
        }
    }
    for ack in acks {
        ack.await.expect("stored");
    }
}

/// The peak resident memory of `jetwire args` (KiB), and how long it took.
fn peak_kib(prefix: &str, args: &[&str]) -> (u64, Duration) {
    let started = std::time::Instant::now();
    let out = Command::new("python3")
        .args([
            "-c",
            "import resource, subprocess, sys\n\
             r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n\
             print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
             sys.exit(r.returncode)",
            env!("CARGO_BIN_EXE_jetwire"),
        ])
        .args(args)
        .env("NATS_URL", shared_server().url())
        .env("JETWIRE_SUBJECT_PREFIX", prefix)
        .env_remove("NATS_CONTEXT")
        .output()
        .expect("run jetwire under python3");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kib = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("ru_maxrss");
    (kib, started.elapsed())
}

/// The CLI's memory does not grow with the dead-letter stream: `status`,
/// `dlq ls` and `purge --all --dry-run` over 2,000 letters and over
/// 20,000 peak within a few MiB of each other, and under 100 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn the_clis_memory_does_not_grow_with_the_letters() {
    let prefix = unique_prefix("cliscale");
    let app = App::new(
        Config::builder()
            .url(shared_server().url())
            .subject_prefix(&prefix)
            .app("cliscale")
            .build()
            .expect("valid"),
    )
    .only(&[])
    .start()
    .await
    .expect("starts");
    let client = app.publisher().client().clone();
    let commands: [&[&str]; 3] = [
        &["status"],
        &["dlq", "ls"],
        &["dlq", "purge", "--all", "--dry-run"],
    ];
    let mut peaks = Vec::new();
    let mut stored = 0;
    for letters in [2_000, 20_000] {
        store_letters(&client, &prefix, stored, letters - stored).await;
        stored = letters;
        for args in commands {
            let (kib, took) = peak_kib(&prefix, args);
            println!(
                "{args:?} over {letters} letters: {} MiB peak, {took:?}",
                kib / 1024
            );
            peaks.push((args, letters, kib));
        }
    }
    for args in commands {
        let of = |n| {
            peaks
                .iter()
                .find(|(a, l, _)| *a == args && *l == n)
                .map(|p| p.2)
                .expect("measured")
        };
        let (small, large) = (of(2_000), of(20_000));
        assert!(
            large < small + 4 * 1024 && large < 100 * 1024,
            "{args:?}: {small} KiB over 2,000 letters, {large} KiB over 20,000"
        );
    }
    app.shutdown().await.expect("stops");
}

#[subscribe("climp.created", max_deliver = 1)]
async fn cli_msgpack(_job: jetwire::codec::MsgPack<serde_json::Value>) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("refused"))
}

/// A MessagePack letter is shown as the JSON it encodes, in the table
/// view and in `--json`.
#[tokio::test]
async fn a_letter_in_another_codec_is_shown_as_json() {
    let prefix = unique_prefix("climp");
    let config = Config::builder()
        .url(shared_server().url())
        .app("cli")
        .subject_prefix(&prefix)
        .build()
        .expect("valid");
    let running = App::new(config)
        .only(&["cli_msgpack"])
        .start()
        .await
        .expect("starts");
    let order = serde_json::json!({ "order": 7, "items": ["a", "b"] });
    running
        .publisher()
        .publish("climp.created", &jetwire::codec::MsgPack(order.clone()))
        .await
        .expect("publish");
    let dlq = running.dead_letters();
    let letter = eventually(Duration::from_secs(20), "a letter", || async {
        dlq.list(&jetwire::dlq::Filter::new())
            .await
            .expect("list")
            .pop()
    })
    .await;
    running.shutdown().await.expect("shutdown");
    assert_eq!(letter.content_type(), Some("application/msgpack"));
    let seq = letter.sequence().to_string();
    let shown = json(&jetwire(&prefix, &["dlq", "show", &seq, "--json"]));
    assert_eq!(shown["payload"], order, "{shown}");
    let text =
        String::from_utf8_lossy(&jetwire(&prefix, &["dlq", "show", &seq]).stdout).into_owned();
    assert!(text.contains("\"order\": 7"), "{text}");
}
