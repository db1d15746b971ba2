//! Fuzz target: turnstile's request framing against a real `redis-server` (started
//! once per process on a free port, `redis-server` on the PATH): any input Redis
//! frames differently — other boundaries, other arguments, waiting where turnstile
//! does not — is a crash. See `fuzz/src/framing.rs`.
#![no_main]

#[path = "../src/framing.rs"]
mod framing;

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
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH");
        let addr = format!("127.0.0.1:{port}");
        // Ready once it accepts a connection (a bounded number of tries, no fixed sleep).
        for _ in 0..500 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::yield_now();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Mutex::new(Server { _child: child, oracle: framing::Oracle::new(&addr) })
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut s = server().lock().unwrap_or_else(|p| p.into_inner());
    s.oracle.check(data);
});
