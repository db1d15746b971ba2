//! Fuzz target: turnstile's request framing against a real `redis-server` (started
//! once per process on a free port, `redis-server` on the PATH): any input Redis
//! frames differently — other boundaries, other arguments, waiting where turnstile
//! does not — is a crash. See `fuzz/src/framing.rs`.
#![no_main]

#[path = "../src/framing.rs"]
mod framing;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

struct Server {
    _child: Child,
    oracle: framing::Oracle,
}

fn server() -> &'static Mutex<Server> {
    static SERVER: OnceLock<Mutex<Server>> = OnceLock::new();
    SERVER.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-server on the PATH");
        // Ready when its log says so (the port was free a moment ago; if it was taken
        // since, the log ends first and the run fails loudly).
        let log = BufReader::new(child.stdout.take().expect("piped"));
        let ready = log.lines().map_while(Result::ok).any(|l| l.contains("Ready to accept connections"));
        assert!(ready, "redis-server did not start on port {port}");
        let addr = format!("127.0.0.1:{port}");
        Mutex::new(Server { _child: child, oracle: framing::Oracle::new(&addr) })
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut s = server().lock().unwrap_or_else(|p| p.into_inner());
    s.oracle.check(data);
});
