//! `expire_old_after`: scheduled removals fire at their time, from the store's
//! schedule, so a restart or a `kill -9` in between changes nothing (a schedule
//! that fell due while turnstile was down fires before any listener is bound).

use std::sync::Arc;
use std::time::Duration;

use super::error::Result;
use super::{Control, rotation, time};
use crate::auth::SetId;
use crate::store::State;
use crate::store::events::Event;
use crate::store::state::Passwords;

/// Longest sleep between looks at the schedule (a clock step is noticed by then).
const LOOK_EVERY: Duration = Duration::from_secs(30);
/// Pause before retrying a removal the store refused.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Whose set a schedule belongs to.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Bdb(u32),
    User(u32),
}

impl Owner {
    fn record<'a>(&self, state: &'a mut State) -> Option<(&'a mut dyn Passwords, SetId)> {
        match *self {
            Self::Bdb(uid) => {
                state.bdbs.get_mut(&uid).map(|b| (b as &mut dyn Passwords, SetId::BdbDefault(uid)))
            }
            Self::User(uid) => state.users.get_mut(&uid).map(|u| {
                let id = SetId::User(u.name.as_str().into());
                (u as &mut dyn Passwords, id)
            }),
        }
    }
}

impl Control {
    /// Wakes the scheduler: a schedule was made, changed or cancelled.
    pub(super) fn expiry_changed(&self) {
        self.inner.expiry.notify_one();
    }

    /// Fires every schedule that is due; returns when the next one is (Unix ms).
    pub async fn expire_due(&self) -> Option<u64> {
        let now = time::now_ms();
        let snap = self.snapshot();
        let due = |e: Option<&crate::store::state::PasswordExpiry>| e.is_some_and(|e| e.at_ms <= now);
        let owners: Vec<Owner> = snap
            .bdbs
            .values()
            .filter(|b| due(b.expiry()))
            .map(|b| Owner::Bdb(b.uid))
            .chain(snap.users.values().filter(|u| due(u.expiry())).map(|u| Owner::User(u.uid)))
            .collect();
        for owner in owners {
            if let Err(e) = self.fire(owner).await {
                tracing::error!(?owner, error = %e, "scheduled password expiry failed; will retry");
            }
        }
        let snap = self.snapshot();
        snap.bdbs
            .values()
            .filter_map(|b| b.expiry())
            .chain(snap.users.values().filter_map(|u| u.expiry()))
            .map(|e| e.at_ms)
            .min()
    }

    /// Removes a due schedule's passwords (those still in the set), as a DELETE
    /// would, closing their connections where the database says so.
    async fn fire(&self, owner: Owner) -> Result<()> {
        let mut state = self.lock().await?;
        let mut next = state.clone();
        let Some((record, id)) = owner.record(&mut next) else { return Ok(()) };
        let Some(expiry) = record.expiry().cloned().filter(|e| e.at_ms <= time::now_ms()) else {
            return Ok(());
        };
        let d = &self.inner.directory;
        let Some(before) = d.passwords(&id) else { return Ok(()) };
        let ids: Vec<&str> = expiry
            .remove
            .iter()
            .map(String::as_str)
            .filter(|i| before.entry(i).is_some() && *i != expiry.keep)
            .collect();
        let set =
            if ids.is_empty() {
                None
            } else {
                Some(d.prepare_without(&id, &ids).map_err(|e| {
                    super::Error::new(super::Kind::Unavailable, "internal_error", e.to_string())
                })?)
            };
        let (passwords, meta, schedule) = record.parts();
        *schedule = None;
        if let Some(set) = &set {
            *passwords = set.to_phc();
            *meta = rotation::reconcile(set, meta, |i| crate::store::state::PasswordMeta {
                id: i.to_string(),
                ..Default::default()
            });
        }
        let mut event = Event::new("passwords_expired", time::now_ms());
        event.actor = expiry.by.clone();
        event.password_ids = ids.iter().map(|s| s.to_string()).collect();
        match owner {
            Owner::Bdb(uid) => event.bdb_uid = Some(uid),
            Owner::User(uid) => {
                event.user_uid = Some(uid);
                event.user = next.users.get(&uid).map(|u| u.name.clone());
            }
        }
        self.record(&mut next, event);
        self.commit(&mut state, next).await?;
        let Some(set) = set else { return Ok(()) };
        let _ = d.install(&id, set, true);
        drop(state);
        tracing::info!(?owner, removed = ids.len(), "scheduled password expiry: old passwords removed");
        let d = d.clone();
        self.close_sessions(true, |i| i.set == id && !d.is_current(i));
        Ok(())
    }

    /// Runs schedules at their time until shutdown. Holds the control plane weakly.
    pub(super) fn spawn_expiry_scheduler(&self) {
        let weak = Arc::downgrade(&self.inner);
        let wake = Arc::clone(&self.inner.expiry);
        let shutdown = self.inner.endpoints.shutdown().clone();
        self.inner.endpoints.tracker().spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let next = Control { inner }.expire_due().await;
                let now = time::now_ms();
                let wait = match next {
                    Some(t) if t <= now => RETRY_AFTER,
                    Some(t) => Duration::from_millis(t - now).min(LOOK_EVERY),
                    None => LOOK_EVERY,
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake.notified() => {}
                }
            }
        });
    }
}
