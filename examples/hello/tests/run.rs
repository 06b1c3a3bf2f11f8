//! The README's example, run as a user runs it: `NATS_URL=memory://` and
//! nothing else, no server anywhere.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn the_readme_example_is_this_example() {
    let readme = include_str!("../../../README.md");
    let code = include_str!("../src/main.rs");
    let block = readme
        .split("## Example\n\n```rust,no_run\n")
        .nth(1)
        .and_then(|rest| rest.split("```\n").next())
        .expect("the README has an example block");
    assert_eq!(
        block, code,
        "README.md's example and examples/hello differ: copy one into the other"
    );
}

#[test]
fn runs_in_memory_with_nothing_installed_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hello"))
        .env("NATS_URL", "memory://")
        .env("JETWIRE_APP", "hello")
        .env_remove("JETWIRE_SUBJECT_PREFIX")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let stdout = child.stdout.take().expect("piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The event handler published the email job; the queue handler ran it.
    let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        let out = child.wait_with_output().expect("reaped");
        panic!(
            "no line from the example within 30 s; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert_eq!(line, "emailed ada@example.com: thanks");
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = child.wait_with_output().expect("the example exits");
    assert!(
        out.status.success(),
        "exit {:?} after SIGTERM; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines.try_iter().next().is_none(), "one email, printed once");
}
