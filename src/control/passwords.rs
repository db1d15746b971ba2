//! Password rotation: a database's default-user set and users' sets.

use super::error::{Error, Kind, Result};
use super::login::Caller;
use super::{Control, complexity, time};
use crate::auth::{ChangeError, SetChange, SetId};

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
        self.retrying(|| self.bdb_password_once(actor, uid, op, password)).await
    }

    async fn bdb_password_once(
        &self,
        actor: Option<&Caller>,
        uid: u32,
        op: PasswordOp,
        password: &str,
    ) -> Result<()> {
        let mut state = self.lock().await?;
        if !state.bdbs.contains_key(&uid) {
            return Err(Error::not_found("bdb_not_exist", format!("database {uid} does not exist")));
        }
        if op != SetChange::Remove {
            complexity::check(&state.cluster, password, None)
                .map_err(|e| Error { kind: Kind::NotAcceptable, ..e })?;
        }
        let id = SetId::BdbDefault(uid);
        let set = self
            .inner
            .directory
            .prepare(&id, op, password.as_bytes())
            .await
            .map_err(|e| refused(e, Kind::NotAcceptable))?;
        let mut next = state.clone();
        if let Some(b) = next.bdbs.get_mut(&uid) {
            b.passwords = set.to_phc();
        }
        let mut event = Self::event_by(super::telemetry::password_event(op), actor);
        event.bdb_uid = Some(uid);
        self.record(&mut next, event);
        self.commit(&mut state, next).await?;
        tracing::info!(bdb = uid, ?op, "default-user password set changed");
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
        self.retrying(|| self.user_password_once(caller, username, op, password, required_old)).await
    }

    async fn user_password_once(
        &self,
        caller: &Caller,
        username: Option<&str>,
        op: PasswordOp,
        password: &str,
        required_old: Option<&str>,
    ) -> Result<()> {
        let target = username.unwrap_or(&caller.name).to_string();
        if target != caller.name && !caller.is_admin() {
            return Err(Error::forbidden("only an admin may change another user's passwords"));
        }
        let mut state = self.lock().await?;
        let Some(user) = state.users.values().find(|u| u.name == target).cloned() else {
            return Err(Error::not_found("user_not_exist", format!("user {target:?} does not exist")));
        };
        if op != SetChange::Remove {
            complexity::check(&state.cluster, password, Some(&user.email))?;
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
        let set = self
            .inner
            .directory
            .prepare(&id, op, password.as_bytes())
            .await
            .map_err(|e| refused(e, Kind::BadRequest))?;
        let mut next = state.clone();
        if let Some(u) = next.users.get_mut(&user.uid) {
            u.passwords = set.to_phc();
            if op != SetChange::Remove {
                u.password_issue_date = time::now();
                if caller.is_admin() {
                    // "Locked until an admin sets a new password": this is that.
                    u.locked_until = None;
                }
            }
        }
        let mut event = Self::event_by(super::telemetry::password_event(op), Some(caller));
        event.user = Some(user.name.clone());
        event.user_uid = Some(user.uid);
        self.record(&mut next, event);
        self.commit(&mut state, next).await?;
        drop(state);
        if op != SetChange::Remove && caller.is_admin() {
            self.forget_login_failures(user.uid).await;
        }
        tracing::info!(user = %user.name, by = %caller.name, ?op, "user password set changed");
        Ok(())
    }
}
