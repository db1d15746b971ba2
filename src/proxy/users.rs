//! turnstile's users on a database's upstream Redis: one per rule in use (the
//! default user's full access, each `redis_acl` granted by `roles_permissions`),
//! named `__turnstile:<instance>:<bdb>:<rule>`, with a password derived from
//! turnstile's secret and the rule plus the fixed denials. Client sessions log in
//! as these users; the service credential only manages them ([`super::manage`]).
//!
//! A user is made (or changed) when a client first needs it and by
//! [`UpstreamUsers::reconcile`] (at start, after every change, periodically, and
//! after a login that got `WRONGPASS`: an upstream restarted without an ACL file).
//! What is known to be on the upstream is cached per upstream, so a client's login
//! costs no management round trip once its user exists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_protocol::resp2::types::OwnedFrame;
use zeroize::Zeroizing;

use super::Upstream;
use super::handshake::{self, UpstreamError};
use super::io::{UpstreamRead, UpstreamWrite};
use super::manage::{self, Session};
use crate::authz::{Grant, RuleKey, Secret, denials};
use crate::resp::encode;

/// How long one management pass (connect, list, changes) may take in all.
const MANAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// `ACL` subcommands turnstile answers itself, and whether a user's rule grants
/// them (asked of Redis with `ACL DRYRUN`, so Redis's rule logic decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclPerm {
    Whoami = 1,
    Users = 2,
    List = 4,
    Getuser = 8,
    Dryrun = 16,
    /// `CLIENT REPLY`, which turnstile implements itself.
    ClientReply = 32,
}

const PROBES: [(AclPerm, &[&[u8]]); 6] = [
    (AclPerm::Whoami, &[b"ACL", b"WHOAMI"]),
    (AclPerm::Users, &[b"ACL", b"USERS"]),
    (AclPerm::List, &[b"ACL", b"LIST"]),
    (AclPerm::Getuser, &[b"ACL", b"GETUSER", b"x"]),
    (AclPerm::Dryrun, &[b"ACL", b"DRYRUN", b"x", b"PING"]),
    (AclPerm::ClientReply, &[b"CLIENT", b"REPLY", b"ON"]),
];

/// How a client session logs in upstream, and what Redis said about the user.
pub struct Credential {
    pub name: Arc<str>,
    password: Zeroizing<String>,
    /// The rule text the upstream user was given.
    pub rule: Arc<str>,
    perms: u8,
    /// The upstream names the user in ACL errors (Redis 7.2+, Valkey): the errors
    /// turnstile makes itself then do too (see [`Credential::noperm`]).
    pub names_user: bool,
    /// `ACL LIST`'s description of the user (after `user <name> `), without
    /// password hashes.
    pub description: String,
    /// `ACL GETUSER`'s reply (RESP2 form), passwords emptied.
    pub details: Option<OwnedFrame>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Credential {
    /// `AUTH <name> <password>`. Wiped when dropped.
    pub fn auth_command(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(encode::command(&[b"AUTH", self.name.as_bytes(), self.password.as_bytes()]).to_vec())
    }

    /// `-NOPERM …` as this upstream answers a user (`shown`) whose rule lacks
    /// `fullname`.
    pub fn noperm(&self, fullname: &str, shown: &str) -> bytes::Bytes {
        super::acl::noperm(fullname, self.names_user.then_some(shown))
    }

    /// Whether the user's rule grants an `ACL` subcommand turnstile answers.
    pub fn allows(&self, p: AclPerm) -> bool {
        self.perms & p as u8 != 0
    }
}

/// Why a management pass failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Redis refused the rule (an unknown command or category…): its words.
    #[error("the upstream refused the rule: {0}")]
    RuleRefused(String),
}

impl ManageError {
    /// The error as the data path reports it to a client.
    pub fn upstream(&self) -> UpstreamError {
        match self {
            Self::Upstream(e) => *e,
            Self::RuleRefused(_) => UpstreamError::RuleRefused,
        }
    }
}

#[derive(Default)]
struct Applied {
    /// The upstream the users below were made on: another upstream starts afresh.
    upstream: Option<Arc<Upstream>>,
    users: HashMap<RuleKey, Arc<Credential>>,
}

/// See the module documentation. One per database.
pub struct UpstreamUsers {
    bdb: u32,
    secret: Secret,
    applied: Mutex<Applied>,
    /// One management pass at a time.
    managing: tokio::sync::Mutex<()>,
    /// The last pass's failure, for `/ready` (None once one succeeds).
    problem: Mutex<Option<ManageError>>,
}

impl std::fmt::Debug for UpstreamUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamUsers").field("bdb", &self.bdb).finish_non_exhaustive()
    }
}

impl UpstreamUsers {
    pub fn new(bdb: u32, secret: Secret) -> Self {
        Self {
            bdb,
            secret,
            applied: Mutex::default(),
            managing: tokio::sync::Mutex::new(()),
            problem: Mutex::new(None),
        }
    }

    /// The upstream name of the user of rule `key`.
    pub fn name(&self, key: RuleKey) -> String {
        format!("{}{}", self.secret.prefix(self.bdb), key.tag())
    }

    /// Names of this database's users start with this.
    pub fn prefix(&self) -> String {
        self.secret.prefix(self.bdb)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The credential of `grant` if its user is known to be on `upstream` with
    /// that rule.
    pub fn cached(&self, upstream: &Arc<Upstream>, grant: &Grant) -> Option<Arc<Credential>> {
        let a = self.lock();
        if !a.upstream.as_ref().is_some_and(|u| Arc::ptr_eq(u, upstream)) {
            return None;
        }
        a.users.get(&grant.key).filter(|c| c.rule == grant.rule).cloned()
    }

    /// The credential a client with `grant` logs in with, making its user first if
    /// it is not known to exist with that rule.
    pub async fn credential(
        &self,
        upstream: &Arc<Upstream>,
        grant: &Grant,
    ) -> Result<Arc<Credential>, ManageError> {
        if let Some(c) = self.cached(upstream, grant) {
            return Ok(c);
        }
        self.pass(upstream, std::slice::from_ref(grant), false).await?;
        self.cached(upstream, grant).ok_or(ManageError::Upstream(UpstreamError::Unavailable))
    }

    /// A new upstream session logged in as `grant`'s user (made first if needed).
    /// A refused login means the upstream lost its users: they are made again and
    /// the login retried, once.
    pub async fn session(
        &self,
        upstream: &Arc<Upstream>,
        grant: &Grant,
        resp3: bool,
    ) -> Result<(UpstreamRead, UpstreamWrite, Arc<Credential>), UpstreamError> {
        let mut retried = false;
        loop {
            let cred = self.credential(upstream, grant).await.map_err(|e| e.upstream())?;
            match handshake::open(upstream, &cred, resp3).await {
                Ok((r, w)) => return Ok((r, w, cred)),
                Err(UpstreamError::LoginRefused) if !retried => {
                    retried = true;
                    self.forget();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Forgets what is on the upstream: its login refused a user of ours, so it
    /// lost them (restarted without an ACL file); the next need makes them again.
    pub fn forget(&self) {
        self.lock().users.clear();
    }

    /// Makes the upstream hold exactly `wanted` of this database's users, each
    /// with its rule: missing or changed ones are (re)made, others deleted (Redis
    /// closes their connections).
    pub async fn reconcile(&self, upstream: &Arc<Upstream>, wanted: &[Grant]) -> Result<(), ManageError> {
        self.pass(upstream, wanted, true).await
    }

    /// Whether the upstream accepts `rule` (checked on a user that is off, made and
    /// deleted at once, so no live user changes).
    pub async fn check_rule(&self, upstream: &Arc<Upstream>, rule: &str) -> Result<(), ManageError> {
        let probe = format!("{}probe", self.prefix());
        let check = async {
            let mut s = Session::open(upstream).await?;
            let rules = denials::upstream_rules(rule);
            let mut args: Vec<&[u8]> =
                vec![b"ACL", b"SETUSER", probe.as_bytes(), b"reset", b"off", b"resetchannels"];
            args.extend(rules.iter().map(|r| r.as_bytes()));
            let outcome = match s.call(&args).await? {
                OwnedFrame::SimpleString(_) => Ok(()),
                OwnedFrame::Error(e) if e.starts_with("NOPERM") => Err(UpstreamError::CannotManage.into()),
                OwnedFrame::Error(e) => Err(ManageError::RuleRefused(e)),
                _ => Err(UpstreamError::Lost.into()),
            };
            s.call(&[b"ACL", b"DELUSER", probe.as_bytes()]).await?;
            outcome
        };
        tokio::time::timeout(MANAGE_TIMEOUT, check).await.unwrap_or(Err(UpstreamError::Unavailable.into()))
    }

    /// The last management failure, if the last pass failed.
    pub fn problem(&self) -> Option<ManageError> {
        self.problem.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn pass(&self, upstream: &Arc<Upstream>, wanted: &[Grant], full: bool) -> Result<(), ManageError> {
        if !upstream.is_current() {
            // A Sentinel-managed node that is no longer (or not yet) the primary:
            // its users are made on the next one when it is installed.
            return Err(UpstreamError::NoPrimary.into());
        }
        let _one = self.managing.lock().await;
        // Someone may have made them while this waited.
        if !full && wanted.iter().all(|g| self.cached(upstream, g).is_some()) {
            return Ok(());
        }
        let outcome = tokio::time::timeout(MANAGE_TIMEOUT, self.manage(upstream, wanted, full))
            .await
            .unwrap_or(Err(ManageError::Upstream(UpstreamError::Unavailable)));
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = outcome.as_ref().err().cloned();
        if let Err(e) = &outcome {
            tracing::warn!(bdb = self.bdb, error = %e, "could not manage turnstile's upstream users");
        }
        outcome
    }

    async fn manage(
        &self,
        upstream: &Arc<Upstream>,
        wanted: &[Grant],
        full: bool,
    ) -> Result<(), ManageError> {
        let mut s = Session::open(upstream).await?;
        let listed = list(&mut s).await?;
        let prefix = self.prefix();
        let known: HashMap<RuleKey, Arc<Credential>> = {
            let a = self.lock();
            match &a.upstream {
                Some(u) if Arc::ptr_eq(u, upstream) => a.users.clone(),
                _ => HashMap::new(),
            }
        };
        let mut changed = Vec::new();
        for g in wanted {
            let name = self.name(g.key);
            let current = known.get(&g.key).is_some_and(|c| c.rule == g.rule) && listed.contains_key(&name);
            if !current {
                setuser(&mut s, &name, &self.secret.password(&name), &g.rule).await?;
                changed.push(g.clone());
            }
        }
        let wanted_names: Vec<String> = wanted.iter().map(|g| self.name(g.key)).collect();
        if full {
            for name in listed.keys().filter(|n| n.starts_with(&prefix) && !wanted_names.contains(n)) {
                // Redis closes the connections logged in as a deleted user.
                match s.call(&[b"ACL", b"DELUSER", name.as_bytes()]).await? {
                    OwnedFrame::Integer(_) => {
                        tracing::info!(bdb = self.bdb, user = %name, "deleted an upstream user no longer needed")
                    }
                    other => {
                        tracing::warn!(bdb = self.bdb, reply = ?manage::text(&other), "ACL DELUSER refused");
                        return Err(UpstreamError::CannotManage.into());
                    }
                }
            }
        }
        let listed = if changed.is_empty() { listed } else { list(&mut s).await? };
        let mut made = Vec::new();
        for g in &changed {
            let name = self.name(g.key);
            let (perms, names_user) = probe(&mut s, &name).await?;
            let details = match s.call(&[b"ACL", b"GETUSER", name.as_bytes()]).await? {
                OwnedFrame::Array(fields) => Some(OwnedFrame::Array(without_passwords(fields))),
                _ => None,
            };
            let description = listed.get(&name).cloned().unwrap_or_default();
            let cred = Credential {
                name: Arc::from(name.as_str()),
                password: self.secret.password(&name),
                rule: Arc::clone(&g.rule),
                perms,
                names_user,
                description,
                details,
            };
            made.push((g.key, Arc::new(cred)));
        }
        let mut a = self.lock();
        if !a.upstream.as_ref().is_some_and(|u| Arc::ptr_eq(u, upstream)) {
            *a = Applied { upstream: Some(Arc::clone(upstream)), users: HashMap::new() };
        }
        if full {
            let keep: Vec<RuleKey> = wanted.iter().map(|g| g.key).collect();
            a.users.retain(|k, _| keep.contains(k));
        }
        for (k, c) in made {
            a.users.insert(k, c);
        }
        Ok(())
    }
}

/// `ACL LIST` as name → description (password hashes removed).
async fn list(s: &mut Session) -> Result<HashMap<String, String>, ManageError> {
    let lines = match s.call(&[b"ACL", b"LIST"]).await? {
        OwnedFrame::Array(lines) => lines,
        other => {
            tracing::warn!(reply = ?manage::text(&other), "ACL LIST refused");
            return Err(UpstreamError::CannotManage.into());
        }
    };
    let mut out = HashMap::new();
    for l in lines.iter().filter_map(manage::text) {
        let mut words = l.split(' ');
        if words.next() != Some("user") {
            continue;
        }
        let Some(name) = words.next() else { continue };
        let description: Vec<&str> = words.filter(|w| !w.starts_with('#') && !w.starts_with('>')).collect();
        out.insert(name.to_string(), description.join(" "));
    }
    Ok(out)
}

/// `ACL SETUSER` with the rule and the fixed denials, atomically (Redis applies all
/// of it or none).
async fn setuser(s: &mut Session, name: &str, password: &str, rule: &str) -> Result<(), ManageError> {
    let pass = Zeroizing::new(format!(">{password}"));
    let rules = denials::upstream_rules(rule);
    let mut args: Vec<&[u8]> = vec![b"ACL", b"SETUSER", name.as_bytes(), b"reset", b"on", pass.as_bytes()];
    // Redis 7's default for a new user, whatever `acl-pubsub-default` says.
    args.push(b"resetchannels");
    args.extend(rules.iter().map(|r| r.as_bytes()));
    match s.call(&args).await? {
        OwnedFrame::SimpleString(_) => Ok(()),
        OwnedFrame::Error(e) if e.starts_with("NOPERM") || e.starts_with("NOAUTH") => {
            Err(UpstreamError::CannotManage.into())
        }
        OwnedFrame::Error(e) => {
            // Never the password, should Redis ever quote it.
            Err(ManageError::RuleRefused(e.replace(password, "…")))
        }
        _ => Err(UpstreamError::Lost.into()),
    }
}

/// Which of the `ACL` subcommands turnstile answers the user's rule grants, and
/// whether the upstream's refusals name the user (`User <name> has no
/// permissions…`, Redis 7.2+) or not (`This user has no permissions…`, 7.0).
async fn probe(s: &mut Session, name: &str) -> Result<(u8, bool), ManageError> {
    let mut perms = 0;
    let mut names_user = false;
    for (perm, cmd) in PROBES {
        let mut args: Vec<&[u8]> = vec![b"ACL", b"DRYRUN", name.as_bytes()];
        args.extend_from_slice(cmd);
        match s.call(&args).await? {
            OwnedFrame::SimpleString(ok) if ok == b"OK" => perms |= perm as u8,
            OwnedFrame::BulkString(why) => names_user |= why.starts_with(b"User "),
            OwnedFrame::Error(e) if e.starts_with("NOPERM") => return Err(UpstreamError::CannotManage.into()),
            // An older Redis without DRYRUN: turnstile answers as if granted only
            // what the rule cannot hide (its own name).
            OwnedFrame::Error(_) => perms |= (perm == AclPerm::Whoami) as u8,
            _ => return Err(UpstreamError::Lost.into()),
        }
    }
    // A command no rule grants (a fixed denial): Redis says why, in its words.
    match s.call(&[b"ACL", b"DRYRUN", name.as_bytes(), b"ACL", b"SETUSER", b"x"]).await? {
        OwnedFrame::BulkString(why) => names_user |= why.starts_with(b"User "),
        OwnedFrame::Error(e) if e.starts_with("NOPERM") => return Err(UpstreamError::CannotManage.into()),
        _ => {}
    }
    Ok((perms, names_user))
}

/// `ACL GETUSER`'s fields with the passwords list emptied.
fn without_passwords(mut fields: Vec<OwnedFrame>) -> Vec<OwnedFrame> {
    let mut i = 0;
    while i + 1 < fields.len() {
        if manage::text(&fields[i]).as_deref() == Some("passwords") {
            fields[i + 1] = OwnedFrame::Array(Vec::new());
        }
        i += 2;
    }
    fields
}
