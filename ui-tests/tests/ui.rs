//! Every compile error the macros can emit, with its message, and every
//! valid form of the API.
//!
//! The `.stderr` snapshots hold the whole of rustc's output, which changes
//! from one rustc release to the next, so they are compared in full only
//! on the toolchain they were made with (`RUSTC_VERSION` below; regenerate
//! with `TRYBUILD=overwrite` when moving to another). On any other
//! toolchain, or with `JETWIRE_UI_PORTABLE=1`, the portable check runs
//! instead: every case still compiles or fails as it should, and every
//! error message a snapshot holds (jetwire's own words) is still emitted
//! for that case.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The rustc the snapshots were made with.
const RUSTC_VERSION: &str = "1.95.0";

/// Messages worded by rustc rather than jetwire: on another toolchain the
/// portable check asks only that their cases fail.
const RUSTC_WORDED: &[&str] = &["the trait bound ", "future cannot be sent"];

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    if snapshots_apply() {
        t.compile_fail("tests/fail/*.rs");
    } else {
        portable::every_case_fails_with_its_messages();
    }
}

/// Whether this rustc is the one the snapshots were made with.
fn snapshots_apply() -> bool {
    if std::env::var_os("JETWIRE_UI_PORTABLE").is_some() {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let applies = version.split_whitespace().nth(1) == Some(RUSTC_VERSION);
    if !applies {
        eprintln!(
            "ui: snapshots were made with rustc {RUSTC_VERSION}, this is {}; checking messages only",
            version.trim()
        );
    }
    applies
}

mod portable {
    use super::*;

    fn manifest_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// The fail cases: name, source, and the first line of each error
    /// message in its snapshot.
    fn cases() -> Vec<(String, PathBuf, Vec<String>)> {
        let dir = manifest_dir().join("tests/fail");
        let mut cases: Vec<_> = std::fs::read_dir(&dir)
            .expect("tests/fail")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .map(|source| {
                let name = source
                    .file_stem()
                    .expect("a file")
                    .to_string_lossy()
                    .into_owned();
                let snapshot = std::fs::read_to_string(source.with_extension("stderr"))
                    .unwrap_or_else(|e| panic!("{name}.stderr: {e}"));
                (name, source, expected_messages(&snapshot))
            })
            .collect();
        cases.sort();
        cases
    }

    /// `error: msg` and `error[E0277]: msg` lines, as `msg`.
    fn expected_messages(snapshot: &str) -> Vec<String> {
        snapshot
            .lines()
            .filter_map(|l| l.strip_prefix("error"))
            .filter_map(|rest| rest.split_once(": ").map(|(_, msg)| msg.to_owned()))
            .filter(|msg| !RUSTC_WORDED.iter().any(|w| msg.starts_with(w)))
            .collect()
    }

    /// Checks every fail case in one `cargo check` of a scratch package
    /// with one binary per case, reusing the workspace's build of jetwire.
    pub(super) fn every_case_fails_with_its_messages() {
        let cases = cases();
        let scratch = tempfile_dir();
        write_package(&scratch, &cases);
        let workspace = manifest_dir().join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let out = Command::new(cargo)
            .args([
                "check",
                "--bins",
                "--keep-going",
                "--message-format=json",
                "--quiet",
            ])
            .current_dir(&scratch)
            .env("CARGO_TARGET_DIR", workspace.join("target/ui-portable"))
            .output()
            .expect("run cargo check");
        let emitted = errors_by_case(&String::from_utf8_lossy(&out.stdout));
        let mut problems = Vec::new();
        for (name, _, expected) in &cases {
            let got = emitted.get(name).cloned().unwrap_or_default();
            if got.is_empty() {
                problems.push(format!("{name}: compiled, but must fail"));
            }
            for msg in expected {
                if !got.iter().any(|g| g == msg) {
                    problems.push(format!("{name}: no error `{msg}`; got {got:?}"));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("jetwire-ui-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn write_package(dir: &Path, cases: &[(String, PathBuf, Vec<String>)]) {
        let root = manifest_dir().join("..");
        let mut manifest = format!(
            "[package]\nname = \"jetwire-ui-portable\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\njetwire = {{ path = {:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\nserde_json = \"1\"\n\n[workspace]\n",
            root.join("runtime")
        );
        for (name, source, _) in cases {
            manifest.push_str(&format!("\n[[bin]]\nname = {name:?}\npath = {source:?}\n"));
        }
        std::fs::write(dir.join("Cargo.toml"), manifest).expect("write Cargo.toml");
        // The workspace's lock keeps the scratch package on the same versions.
        std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).expect("copy Cargo.lock");
    }

    /// The first line of every error rustc emitted, by binary.
    fn errors_by_case(json_lines: &str) -> BTreeMap<String, Vec<String>> {
        let mut by_case: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in json_lines.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["reason"] != "compiler-message" || v["message"]["level"] != "error" {
                continue;
            }
            let Some(name) = v["target"]["name"].as_str() else {
                continue;
            };
            let msg = v["message"]["message"].as_str().unwrap_or_default();
            let first = msg.lines().next().unwrap_or_default().to_owned();
            by_case.entry(name.to_owned()).or_default().push(first);
        }
        by_case
    }
}
