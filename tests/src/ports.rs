//! Free loopback ports for the servers the tests start.

use std::net::TcpListener;
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
