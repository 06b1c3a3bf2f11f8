//! Processes the tests start and kill: a test app in its own process, and
//! checking a process run.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Panics with the exit status and stderr unless a process run succeeded.
pub fn assert_succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test app in its own process (the package's `jetwire-test-worker`
/// binary), for tests that kill it. Its stdout lines are read on a thread.
pub struct WorkerProcess {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl WorkerProcess {
    /// Starts `exe` in `mode` against `server` under `prefix`, with extra
    /// environment. Does not wait for it to be ready.
    pub fn spawn(
        exe: &str,
        server: &str,
        prefix: &str,
        mode: &str,
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let mut child = Command::new(exe)
            .env("NATS_URL", server)
            .env("JETWIRE_SUBJECT_PREFIX", prefix)
            .env("JETWIRE_APP", "worker")
            .env("WORKER_MODE", mode)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        WorkerProcess { child, lines }
    }

    /// [`WorkerProcess::spawn`], then waits for its `READY` line.
    pub fn ready(
        exe: &str,
        server: &str,
        prefix: &str,
        mode: &str,
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let w = WorkerProcess::spawn(exe, server, prefix, mode, env);
        w.expect_line(|l| l == "READY");
        w
    }

    /// The next line matching `pred`, skipping others; panics after 20 s.
    pub fn expect_line(&self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .expect("a line from the worker");
            if pred(&line) {
                return line;
            }
        }
    }

    /// Every line printed so far.
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGSTOP: the process is frozen, as a host or VM is when paused.
    pub fn pause(&self) {
        signal(self.child.id(), "STOP");
    }

    /// SIGCONT after [`WorkerProcess::pause`].
    pub fn resume(&self) {
        signal(self.child.id(), "CONT");
    }

    /// SIGKILL, and reap it; returns the lines it printed before it died
    /// and were not read yet.
    pub fn kill9(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::iter::from_fn(|| self.lines.recv_timeout(Duration::from_secs(5)).ok()).collect()
    }

    /// SIGTERM, then wait for the exit; returns the status and every line
    /// printed until then.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        signal(self.child.id(), "TERM");
        let status = self.child.wait().expect("worker exits");
        let lines =
            std::iter::from_fn(|| self.lines.recv_timeout(Duration::from_secs(5)).ok()).collect();
        (status, lines)
    }
}

/// `n` workers started as [`WorkerProcess::ready`], each in its slot (a
/// test takes one out to kill it).
pub fn replicas(
    exe: &str,
    server: &str,
    prefix: &str,
    mode: &str,
    env: &[(&str, &str)],
    n: usize,
) -> Vec<Option<WorkerProcess>> {
    (0..n)
        .map(|_| Some(WorkerProcess::ready(exe, server, prefix, mode, env)))
        .collect()
}

/// Every line the running `replicas` printed since they were last
/// drained, each with its replica's slot.
pub fn drain_replicas(replicas: &[Option<WorkerProcess>]) -> Vec<(usize, String)> {
    replicas
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
        .flat_map(|(i, r)| r.drain().into_iter().map(move |l| (i, l)))
        .collect()
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` (`STOP`, `KILL`, ..) to process `pid`.
pub(crate) fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{sig} {pid}");
}
