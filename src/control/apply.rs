//! The one way a change reaches memory: the difference between two states becomes
//! updates to the directory (password sets, users, rules, database policies), the
//! database listeners, and the connections that must close. Used at start-up (from
//! the empty state), after a local commit, and when another node's change arrives,
//! so a change is live the same way wherever it was made.

use super::error::Error;
use super::{Control, access_of};
use crate::auth::{PasswordSet, SetId};
use crate::store::State;
use crate::store::state::{BdbRecord, PasswordMeta};

impl Control {
    /// Updates memory from `before` to `after`. Returns the databases whose
    /// listener could not be started (they stay stopped and show at `/ready`).
    pub(super) async fn apply(&self, before: &State, after: &State) -> Vec<(u32, Error)> {
        let d = &self.inner.directory;
        let mut rights = false;
        for (uid, a) in &after.redis_acls {
            if before.redis_acls.get(uid).map(|b| &b.acl) != Some(&a.acl) {
                d.set_acl(*uid, &a.acl);
                rights = true;
            }
        }
        for uid in before.redis_acls.keys().filter(|u| !after.redis_acls.contains_key(u)) {
            d.remove_acl(*uid);
            rights = true;
        }
        // Users gone or renamed lose their name first, so a new user may take it.
        for (uid, old) in &before.users {
            match after.users.get(uid) {
                None => {
                    d.remove_user(&old.name);
                    self.inner.failures.remove(uid);
                    self.inner.last_login.remove(uid);
                    let id = SetId::User(old.name.as_str().into());
                    // As Redis does on ACL DELUSER: the user's connections close.
                    self.close_sessions(false, |i| i.set == id);
                }
                Some(new) if new.name != old.name => {
                    d.remove_user(&old.name);
                    rights = true;
                    let id = SetId::User(old.name.as_str().into());
                    let d2 = d.clone();
                    self.close_sessions(true, |i| i.set == id && !d2.is_current(i));
                }
                Some(_) => {}
            }
        }
        for (uid, u) in &after.users {
            let old = before.users.get(uid).filter(|o| o.name == u.name);
            if old.map(|o| &o.role_uids) != Some(&u.role_uids) {
                if d.set_user(&u.name, u.role_uids.clone()).is_err() {
                    tracing::error!(user = uid, "a stored user name is not usable");
                    continue;
                }
                rights |= old.is_some();
            }
            let old_phc = old.map_or(&[][..], |o| &o.passwords[..]);
            self.apply_set(SetId::User(u.name.as_str().into()), old_phc, &u.passwords, &u.password_meta);
        }
        for uid in before.bdbs.keys() {
            if !after.bdbs.contains_key(uid) {
                self.inner.endpoints.stop(*uid).await;
                d.remove_bdb(*uid);
            }
        }
        let mut failed = Vec::new();
        for (uid, b) in &after.bdbs {
            let old = before.bdbs.get(uid);
            if old.map(access_of) != Some(access_of(b)) {
                d.set_bdb(*uid, access_of(b));
                rights |= old.is_some();
            }
            let old_phc = old.map_or(&[][..], |o| &o.passwords[..]);
            self.apply_set(SetId::BdbDefault(*uid), old_phc, &b.passwords, &b.password_meta);
            match self.apply_endpoint(old, b).await {
                // A database new while running (not at start-up, where before is the
                // empty state, with no user: start-up checks its upstreams itself)
                // gets its upstream users at once, not at the next periodic pass.
                Ok(started) => rights |= started && old.is_none() && !before.users.is_empty(),
                Err(e) => {
                    tracing::error!(bdb = uid, error = %e, "database endpoint not started");
                    failed.push((*uid, e));
                }
            }
        }
        if rights {
            // Rules granted or taken away, roles changed: live upstream, and for
            // connected clients, before the change's 200.
            self.sync_rights().await;
        }
        failed
    }

    /// Installs a password set that changed; where a password left it, connections
    /// that used it close on databases that ask for it.
    fn apply_set(&self, id: SetId, old: &[String], new: &[String], meta: &[PasswordMeta]) {
        if old == new && !old.is_empty() {
            return;
        }
        // With the passwords' public ids (and stored last use), as the node that
        // made the change has them.
        let set = match PasswordSet::from_phc(new, self.inner.hash_params) {
            Ok(s) => super::rotation::restore_ids(s, meta).0,
            Err(e) => {
                tracing::error!(error = %e, "a stored password set is not usable; the previous one stays");
                return;
            }
        };
        let shrinking = old.iter().any(|p| !new.contains(p));
        let d = &self.inner.directory;
        if d.install(&id, set, shrinking).is_err() {
            return;
        }
        if shrinking {
            let d2 = d.clone();
            self.close_sessions(true, |i| i.set == id && !d2.is_current(i));
        }
    }

    /// Where a database listens on this node: a config-defined one where this
    /// node's file says; in a fleet, an API-created one at its port on this node's
    /// own host; else where the record says.
    pub(super) fn listen_for(&self, b: &BdbRecord) -> String {
        if let Some(l) = self.inner.config_listen.get(&b.uid) {
            return l.clone();
        }
        if self.inner.store.fleet().is_some()
            && let Some((_, port)) = b.listen.rsplit_once(':')
        {
            let host = &self.inner.default_bind_host;
            return if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        }
        b.listen.clone()
    }

    /// Starts, moves or updates a database's listener and context; true if it
    /// started a listener for a database that had none.
    async fn apply_endpoint(&self, old: Option<&BdbRecord>, b: &BdbRecord) -> super::Result<bool> {
        let prebound = self.inner.prebound.lock().unwrap_or_else(|p| p.into_inner()).remove(&b.uid);
        let Some(ctx) = self.inner.endpoints.ctx(b.uid) else {
            let listener = match prebound {
                Some(l) => l,
                None => super::endpoints::bind(&self.listen_for(b)).await?,
            };
            return self.start_endpoint(b, listener).await.map(|()| true);
        };
        let Some(old) = old.filter(|o| *o != b) else { return Ok(false) };
        if old.upstream != b.upstream || old.upstream_password_env != b.upstream_password_env {
            ctx.set_upstream(self.upstream_of(b)?);
        }
        ctx.set_max_connections(b.max_connections as usize);
        if old.tls_mode != b.tls_mode {
            // Connections accepted from now on; open ones keep what they have.
            ctx.set_tls(self.listener_tls(b)?);
        }
        let moved = self.listen_for(old) != self.listen_for(b);
        match prebound {
            Some(l) => self.start_endpoint(b, l).await?,
            None if moved => {
                let l = super::endpoints::bind(&self.listen_for(b)).await?;
                self.start_endpoint(b, l).await?
            }
            None => {}
        }
        Ok(false)
    }
}
