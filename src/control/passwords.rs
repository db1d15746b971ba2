//! Password rotation: a database's default-user set and users' sets.

use std::sync::Arc;

use super::error::{Error, Kind, Result};
use super::login::Caller;
use super::rotation::{self, Change, Target};
use super::{Control, complexity, time};
use crate::auth::{ChangeError, PasswordSet, SetChange, SetId};
use crate::store::events::Event;
use crate::store::state::{PasswordExpiry, PasswordMeta, Passwords};

/// The three rotation operations (POST adds, DELETE removes, PUT replaces all).
pub type PasswordOp = SetChange;

/// Maps a refused set change to RS's error code; `kind` is the status family the
/// endpoint uses for refusals (406 for databases, 400 for users).
fn refused(e: ChangeError, kind: Kind) -> Error {
    match e {
        ChangeError::NotFound => Error::not_found("not_found", "no such database or user"),
        ChangeError::AlreadyPresent => Error::new(
            kind,
            "new_password_same_as_current",
            "the password is already one of the current passwords",
        ),
        ChangeError::NotPresent => {
            Error::new(kind, "password_not_found", "the password is not one of the current passwords")
        }
        ChangeError::LastPassword => Error::new(
            kind,
            "cannot_delete_last_password",
            "the last password cannot be deleted: add the new password first, then delete the old one",
        ),
        ChangeError::Empty => Error::new(kind, "invalid_password", "the password is empty"),
        ChangeError::Hash(_) | ChangeError::Persist(_) => {
            tracing::error!(error = %e, "password change failed");
            Error::new(
                Kind::Unavailable,
                "internal_error",
                "the password could not be processed; nothing was changed",
            )
        }
    }
}

/// A password operation computed and checked, not yet stored.
struct Planned {
    before: Arc<PasswordSet>,
    set: PasswordSet,
    removed: Vec<String>,
    meta: Vec<PasswordMeta>,
    expiry: Option<PasswordExpiry>,
}

impl Planned {
    fn write(&self, record: &mut impl Passwords) {
        let (passwords, meta, expiry) = record.parts();
        *passwords = self.set.to_phc();
        *meta = self.meta.clone();
        *expiry = self.expiry.clone();
    }

    /// The ids a new password got.
    fn added(&self) -> Vec<String> {
        rotation::removed(&self.set, &self.before)
    }

    /// The events the operation writes: the change itself (with the ids it
    /// concerns), and what happened to the schedule.
    fn events(
        &self,
        change: &Change<'_>,
        old: Option<&PasswordExpiry>,
        actor: Option<&Caller>,
    ) -> Vec<Event> {
        let mut out = Vec::new();
        let kind = match change.target {
            Target::Expiry => None,
            _ => Some(super::telemetry::password_event(change.op)),
        };
        if let Some(kind) = kind {
            let mut e = Control::event_by(kind, actor);
            e.password_ids = if change.op == SetChange::Remove { self.removed.clone() } else { self.added() };
            out.push(e);
        }
        match (old, &self.expiry) {
            (_, Some(new)) if old != Some(new) && change.op == SetChange::Add => {
                let mut e = Control::event_by("password_expiry_scheduled", actor);
                e.due_ms = Some(new.at_ms);
                e.password_ids = new.remove.clone();
                out.push(e);
            }
            (Some(o), None) => {
                let mut e = Control::event_by("password_expiry_cancelled", actor);
                e.password_ids = o.remove.clone();
                out.push(e);
            }
            _ => {}
        }
        out
    }
}

impl Control {
    /// `PUT|POST|DELETE /v1/bdbs/{uid}/passwords`, with no caller to log.
    pub async fn bdb_password(&self, uid: u32, op: PasswordOp, password: &str) -> Result<()> {
        self.bdb_password_by(None, uid, op, password).await
    }

    /// `PUT|POST|DELETE /v1/bdbs/{uid}/passwords`; the event log names `actor`.
    pub async fn bdb_password_by(
        &self,
        actor: Option<&Caller>,
        uid: u32,
        op: PasswordOp,
        password: &str,
    ) -> Result<()> {
        self.bdb_password_change(actor, uid, Change::plain(op, password)).await
    }

    /// A database default-user password operation with the rotation options
    /// (label, delete by id, the usage guard, `expire_old_after`).
    pub async fn bdb_password_change(
        &self,
        actor: Option<&Caller>,
        uid: u32,
        change: Change<'_>,
    ) -> Result<()> {
        self.retrying(|| self.bdb_password_change_once(actor, uid, change)).await
    }

    async fn bdb_password_change_once(
        &self,
        actor: Option<&Caller>,
        uid: u32,
        change: Change<'_>,
    ) -> Result<()> {
        change.validate().map_err(|e| Error { kind: Kind::BadRequest, ..e })?;
        let mut state = self.lock().await?;
        let Some(record) = state.bdbs.get(&uid).cloned() else {
            return Err(Error::not_found("bdb_not_exist", format!("database {uid} does not exist")));
        };
        if let Target::Password(pw) = change.target
            && change.op != SetChange::Remove
        {
            complexity::check(&state.cluster, pw, None)
                .map_err(|e| Error { kind: Kind::NotAcceptable, ..e })?;
        }
        let id = SetId::BdbDefault(uid);
        let planned = self.plan(&id, &record, &change, actor, Kind::NotAcceptable).await?;
        let mut next = state.clone();
        if let Some(b) = next.bdbs.get_mut(&uid) {
            planned.write(b);
        }
        for mut event in planned.events(&change, record.password_expiry.as_ref(), actor) {
            event.bdb_uid = Some(uid);
            self.record(&mut next, event);
        }
        self.commit(&mut state, next).await?;
        self.inner
            .directory
            .install(&id, planned.set, !planned.removed.is_empty())
            .map_err(|e| refused(e, Kind::NotAcceptable))?;
        drop(state);
        self.expiry_changed();
        tracing::info!(bdb = uid, op = ?change.op, "default-user password set changed");
        if !planned.removed.is_empty() {
            let d = self.inner.directory.clone();
            self.close_sessions(true, |i| i.set == id && !d.is_current(i));
        }
        Ok(())
    }

    /// `POST|PUT|DELETE /v1/users/password` (and the legacy `/v1/cluster` form, with
    /// `old_password` given). `username` absent means the caller. Admins may rotate
    /// anyone's passwords, everyone else only their own.
    pub async fn user_password(
        &self,
        caller: &Caller,
        username: Option<&str>,
        op: PasswordOp,
        password: &str,
        required_old: Option<&str>,
    ) -> Result<()> {
        self.user_password_change(caller, username, Change::plain(op, password), required_old).await
    }

    /// A user password operation with the rotation options.
    pub async fn user_password_change(
        &self,
        caller: &Caller,
        username: Option<&str>,
        change: Change<'_>,
        required_old: Option<&str>,
    ) -> Result<()> {
        self.retrying(|| self.user_password_change_once(caller, username, change, required_old)).await
    }

    async fn user_password_change_once(
        &self,
        caller: &Caller,
        username: Option<&str>,
        change: Change<'_>,
        required_old: Option<&str>,
    ) -> Result<()> {
        change.validate()?;
        let target = username.unwrap_or(&caller.name).to_string();
        if target != caller.name && !caller.is_admin() {
            return Err(Error::forbidden("only an admin may change another user's passwords"));
        }
        let op = change.op;
        let mut state = self.lock().await?;
        let Some(user) = state.users.values().find(|u| u.name == target).cloned() else {
            return Err(Error::not_found("user_not_exist", format!("user {target:?} does not exist")));
        };
        if let Target::Password(pw) = change.target
            && op != SetChange::Remove
        {
            complexity::check(&state.cluster, pw, Some(&user.email))?;
        }
        if let Some(old) = required_old
            && !self.inner.directory.verify_user(&user.name, old.as_bytes()).await
        {
            return Err(Error::bad_request(
                "invalid_old_password",
                "old_password is not one of the user's current passwords",
            ));
        }
        let id = SetId::User(user.name.as_str().into());
        let planned = self.plan(&id, &user, &change, Some(caller), Kind::BadRequest).await?;
        let mut next = state.clone();
        if let Some(u) = next.users.get_mut(&user.uid) {
            planned.write(u);
            if op != SetChange::Remove {
                u.password_issue_date = time::now();
                if caller.is_admin() {
                    // "Locked until an admin sets a new password": this is that.
                    u.locked_until = None;
                }
            }
        }
        for mut event in planned.events(&change, user.password_expiry.as_ref(), Some(caller)) {
            event.user = Some(user.name.clone());
            event.user_uid = Some(user.uid);
            self.record(&mut next, event);
        }
        self.commit(&mut state, next).await?;
        self.inner
            .directory
            .install(&id, planned.set, !planned.removed.is_empty())
            .map_err(|e| refused(e, Kind::BadRequest))?;
        drop(state);
        self.expiry_changed();
        if op != SetChange::Remove && caller.is_admin() {
            self.forget_login_failures(user.uid).await;
        }
        tracing::info!(user = %user.name, by = %caller.name, ?op, "user password set changed");
        if !planned.removed.is_empty() {
            let d = self.inner.directory.clone();
            self.close_sessions(true, |i| i.set == id && !d.is_current(i));
        }
        Ok(())
    }

    /// Computes an operation's new set, metadata and schedule, and applies the
    /// usage guard. `kind` is the status family of the endpoint's refusals.
    async fn plan(
        &self,
        id: &SetId,
        record: &impl Passwords,
        change: &Change<'_>,
        actor: Option<&Caller>,
        kind: Kind,
    ) -> Result<Planned> {
        let d = &self.inner.directory;
        let before = d.passwords(id).ok_or_else(|| refused(ChangeError::NotFound, kind))?;
        let set = match change.target {
            Target::Password(pw) => {
                d.prepare(id, change.op, pw.as_bytes()).await.map_err(|e| refused(e, kind))?
            }
            Target::Id(entry) => d.prepare_without(id, &[entry]).map_err(|e| match e {
                ChangeError::NotPresent => Error::new(
                    kind,
                    "password_not_found",
                    format!("no password with id {entry:?} in the set"),
                ),
                e => refused(e, kind),
            })?,
            Target::Expiry => {
                if record.expiry().is_none() {
                    return Err(Error::new(
                        kind,
                        "no_scheduled_expiry",
                        "no expiry is scheduled for this set",
                    ));
                }
                (*before).clone()
            }
        };
        let removed = rotation::removed(&before, &set);
        if let Some(window) = change.unless_used_within {
            rotation::guard(&before, &removed, record.meta(), window, &self.clients_of(&before))?;
        }
        let now = time::now();
        let meta = rotation::reconcile(&set, record.meta(), |entry| PasswordMeta {
            id: entry.to_string(),
            label: change.label.map(str::to_string),
            created: now,
            creator: actor.map(|c| c.name.clone()),
            last_used_ms: None,
        });
        let expiry =
            rotation::next_expiry(change, &before, &set, record.expiry(), actor.map(|c| c.name.as_str()));
        Ok(Planned { before, set, removed, meta, expiry })
    }
}
