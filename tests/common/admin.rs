//! Admin API harness: a control plane on a fresh store in a temp dir, driven either
//! in-process through the router (`oneshot`) or as the real `turnstile` binary over
//! HTTPS with curl, as an operator would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64ct::{Base64, Encoding};
use http_body_util::BodyExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use turnstile::control::{Control, Settings};
use turnstile::store::FileStore;

use super::FAST;

pub const ADMIN: &str = "admin";
pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PW: &str = "Admin-pw-1!";

/// A control plane and its router, in-process.
pub struct Admin {
    pub control: Control,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Admin {
    /// A fresh store with the bootstrap admin (`admin` / `ADMIN_PW`) and no database.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let control = start_control(dir.path()).await;
        Self { control, dir, shutdown: CancellationToken::new() }
    }

    /// Starts a second control plane on the same store (a restart).
    pub async fn restart(&self) -> Control {
        start_control(self.dir.path()).await
    }

    /// One request through the router: status, JSON body (Null if empty), headers.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<(&str, &str)>,
        body: Option<&str>,
    ) -> (StatusCode, serde_json::Value, HeaderMap) {
        call(&self.control, method, path, auth, body).await
    }

    /// A request as the bootstrap admin.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let (s, v, _) = self.call(method, path, Some((ADMIN, ADMIN_PW)), body).await;
        (s, v)
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start_control(dir: &Path) -> Control {
    start_control_with(dir, settings(), CancellationToken::new()).await
}

/// The settings `start_control` uses, for tests that change one.
pub fn settings() -> Settings {
    Settings {
        hash_params: FAST,
        verify: turnstile::auth::VerifyOptions {
            concurrency: 2,
            throttle: turnstile::auth::ThrottlePolicy::off(),
            ..Default::default()
        },
        admin_name: ADMIN.into(),
        admin_email: ADMIN_EMAIL.into(),
        admin_password: Some(zeroize::Zeroizing::new(ADMIN_PW.into())),
        bdbs: Vec::new(),
        credential_envs: Default::default(),
        default_bind_host: "127.0.0.1".into(),
        connect_timeout: Duration::from_secs(2),
        auth_timeout: Duration::ZERO,
        pool: Default::default(),
        default_cert: None,
        event_log_capacity: turnstile::store::events::DEFAULT_CAPACITY,
        metrics_auth: false,
        admission: turnstile::proxy::admission::Admission::unlimited(),
        node_addr: "127.0.0.1:0".into(),
        confirm_timeout: Duration::from_millis(500),
        node_forget: Duration::from_secs(3600),
    }
}

/// A control plane on the store in `dir`, stopped by `shutdown`.
pub async fn start_control_with(dir: &Path, settings: Settings, shutdown: CancellationToken) -> Control {
    let store = Arc::new(FileStore::open(dir).unwrap());
    Control::start(settings, store, shutdown, TaskTracker::new()).await.unwrap()
}

pub async fn call(
    control: &Control,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<&str>,
) -> (StatusCode, serde_json::Value, HeaderMap) {
    let mut req = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(path);
    if let Some((user, pw)) = auth {
        req = req.header(
            "authorization",
            format!("Basic {}", Base64::encode_string(format!("{user}:{pw}").as_bytes())),
        );
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Body::from(body.unwrap_or("").to_string())).unwrap();
    let resp = turnstile::admin::app(control.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("non-JSON body: {:?}", String::from_utf8_lossy(&bytes)))
    };
    (status, value, headers)
}

/// The real binary, with its store in a temp dir, TLS on (self-signed).
pub struct Process {
    pub child: tokio::process::Child,
    pub admin_url: String,
    pub bdbs: Vec<(u32, String)>,
    pub dir: PathBuf,
    config: PathBuf,
    /// Variables set in its environment besides `TURNSTILE_ADMIN_PASSWORD`.
    envs: Vec<(String, String)>,
}

impl Process {
    /// Writes a config with one database (uid 1) in front of `upstream` and starts
    /// the binary; returns once it reports its listeners.
    pub async fn start(dir: &Path, upstream: &str) -> Self {
        let config = dir.join("turnstile.toml");
        std::fs::write(
            &config,
            format!(
                "[admin]\nlisten = \"127.0.0.1:0\"\n[store]\ndir = \"{}\"\n[auth]\nargon2_m_cost = 64\nargon2_t_cost = 1\n\
                 [bootstrap]\nadmin_name = \"{ADMIN}\"\nadmin_email = \"{ADMIN_EMAIL}\"\n\
                 [[bdbs]]\nuid = 1\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        Self::spawn(dir, config, Vec::new()).await
    }

    /// Like `start`, with `tables` (whole TOML tables, e.g. `[proxy]`) before the
    /// database and `bdb_extra` (keys) inside database 1's table; `more_bdbs` (whole
    /// `[[bdbs]]` tables) after it.
    pub async fn start_with(
        dir: &Path,
        upstream: &str,
        tables: &str,
        bdb_extra: &str,
        more_bdbs: &str,
    ) -> Self {
        Self::start_configured(dir, upstream, "", tables, bdb_extra, more_bdbs).await
    }

    /// Like `start_with`, with `admin_extra` (keys) inside the `[admin]` table too.
    pub async fn start_configured(
        dir: &Path,
        upstream: &str,
        admin_extra: &str,
        tables: &str,
        bdb_extra: &str,
        more_bdbs: &str,
    ) -> Self {
        Self::start_configured_env(dir, upstream, admin_extra, tables, bdb_extra, more_bdbs, &[]).await
    }

    /// Like `start_configured`, with `envs` in turnstile's environment (the
    /// variables the file or the API name). `admin_extra` may end with sub-tables
    /// of `[admin]` (`[admin.credential_envs]`): `[store]` follows it.
    pub async fn start_configured_env(
        dir: &Path,
        upstream: &str,
        admin_extra: &str,
        tables: &str,
        bdb_extra: &str,
        more_bdbs: &str,
        envs: &[(&str, &str)],
    ) -> Self {
        let config = dir.join("turnstile.toml");
        std::fs::write(
            &config,
            format!(
                "[admin]\nlisten = \"127.0.0.1:0\"\n{admin_extra}\n[store]\ndir = \"{}\"\n[auth]\nargon2_m_cost = 64\nargon2_t_cost = 1\n\
                 [bootstrap]\nadmin_name = \"{ADMIN}\"\nadmin_email = \"{ADMIN_EMAIL}\"\n{tables}\n\
                 [[bdbs]]\nuid = 1\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n{bdb_extra}\n{more_bdbs}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let envs = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::spawn(dir, config, envs).await
    }

    /// Like `start`, logging at trace level (every crate) to `dir/turnstile.log`.
    pub async fn start_tracing(dir: &Path, upstream: &str) -> Self {
        std::fs::File::create(dir.join("turnstile.log")).unwrap();
        Self::start(dir, upstream).await
    }

    async fn spawn(dir: &Path, config: PathBuf, envs: Vec<(String, String)>) -> Self {
        let log = dir.join("turnstile.log");
        let (stderr, level) = if log.exists() {
            let f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            (Stdio::from(f), "trace")
        } else {
            (Stdio::null(), "info")
        };
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnstile"))
            .arg("--config")
            .arg(&config)
            .env("TURNSTILE_ADMIN_PASSWORD", ADMIN_PW)
            .env("TURNSTILE_LOG", level)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut bdbs = Vec::new();
        let admin_url = loop {
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .expect("turnstile did not start in time")
                .unwrap()
                .expect("turnstile exited during start-up");
            let last = line.rsplit(' ').next().unwrap().to_string();
            if line.contains("admin API listening on") {
                break last;
            }
            let uid: u32 = line.split(' ').nth(2).unwrap().parse().unwrap();
            bdbs.push((uid, last));
        };
        Self { child, admin_url, bdbs, dir: dir.to_path_buf(), config, envs }
    }

    /// The address database `uid` listens on.
    pub fn bdb(&self, uid: u32) -> String {
        self.bdbs.iter().find(|(u, _)| *u == uid).map(|(_, a)| a.clone()).expect("no such database")
    }

    /// `kill -9`, then start again on the same config and store.
    pub async fn kill9_and_restart(mut self) -> Self {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
        Self::spawn(&self.dir.clone(), self.config.clone(), self.envs.clone()).await
    }

    /// SIGTERM, wait for a clean exit, start again.
    pub async fn stop_and_restart(self) -> Self {
        self.stop_edit_and_restart(|_| {}).await
    }

    /// Like `stop_and_restart`, calling `edit` with the store directory while
    /// turnstile is stopped (to plant what another node, or an older version, wrote).
    pub async fn stop_edit_and_restart(mut self, edit: impl FnOnce(&Path)) -> Self {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success());
        edit(&self.dir.join("data"));
        Self::spawn(&self.dir.clone(), self.config.clone(), self.envs.clone()).await
    }

    /// Runs curl as the seeds do (`curl -k -u user:pw -X METHOD -H content-type … -d body`).
    pub async fn curl(
        &self,
        method: &str,
        path: &str,
        auth: (&str, &str),
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        curl(&self.admin_url, method, path, auth, body).await
    }
}

/// curl against `base` (`https://host:port`); returns (status, JSON body or Null).
pub async fn curl(
    base: &str,
    method: &str,
    path: &str,
    auth: (&str, &str),
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-k", "-s", "-X", method, "-u", &format!("{}:{}", auth.0, auth.1)]);
    cmd.args(["-H", "content-type: application/json", "-w", "\n%{http_code}"]);
    if let Some(b) = body {
        cmd.args(["-d", b]);
    }
    cmd.arg(format!("{base}{path}"));
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output()).await.expect("curl hung").unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let value = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.into()))
    };
    (code.trim().parse().unwrap_or(0), value)
}

/// One request through the router, body as text (for `/metrics`).
pub async fn call_text(
    control: &Control,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(path);
    if let Some((user, pw)) = auth {
        req = req.header(
            "authorization",
            format!("Basic {}", Base64::encode_string(format!("{user}:{pw}").as_bytes())),
        );
    }
    let resp =
        turnstile::admin::app(control.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// A call as the bootstrap admin, with a JSON body unless `body` is null.
pub async fn admin(
    c: &Control,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let body = (!body.is_null()).then(|| body.to_string());
    let (s, v, _) = call(c, method, path, Some((ADMIN, ADMIN_PW)), body.as_deref()).await;
    (s, v)
}

/// The body of a successful call; anything else fails the test.
#[track_caller]
pub fn ok(r: (StatusCode, serde_json::Value)) -> serde_json::Value {
    assert!(r.0.is_success(), "expected success, got {} {}", r.0, r.1);
    r.1
}
