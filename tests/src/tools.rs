//! What the servers the tests start need: their binaries, installed by
//! the scripts in `scripts/`, and free loopback ports.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    // Ports handed out in this process are never handed out again, so two
    // servers started at once cannot race for the same one.
    static USED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral port")
            .port();
        let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
        if !used.contains(&port) {
            used.push(port);
            return port;
        }
    }
}

/// The path `scripts/<script>` prints, installing what it names on first use.
pub(crate) fn installed(script: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(script);
    let out = Command::new("bash")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// libfaketime's preload library: a process started with it in
/// `LD_PRELOAD` and `FAKETIME=-10m` reads a clock ten minutes behind.
pub fn faketime_library() -> PathBuf {
    installed("faketime-path")
}
