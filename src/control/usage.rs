//! Password usage on the control side: who uses each password now (from the
//! connection registries), and the durable part (`last_used`) written to the
//! store at most once per [`FLUSH_EVERY`] and at shutdown, never once per AUTH.

use std::time::Duration;

use super::Control;
use super::rotation::{self, Clients};
use crate::auth::{PasswordSet, SetId};
use crate::store::State;
use crate::store::events::Event;
use crate::store::state::PasswordMeta;

/// How often changed `last_used` times are written (when no admin change writes
/// them first). Whatever the AUTH rate, usage costs at most one store write per
/// period.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

impl Control {
    /// The connections using the entries of `set` now, at most
    /// [`rotation::MAX_CLIENTS_SHOWN`] per entry.
    pub(super) fn clients_of(&self, set: &PasswordSet) -> Clients {
        let mut clients = Clients::new();
        for (_, ctx) in self.inner.endpoints.all() {
            ctx.sessions.for_each_client(|id, sample| {
                if set.entry(id).is_some() {
                    rotation::collect(&mut clients, id, sample);
                }
            });
        }
        clients
    }

    /// Writes the in-memory `last_used` times into `next` (about to be committed),
    /// and an event for each password's first AUTH.
    pub(super) fn fold_usage(&self, next: &mut State) {
        let capacity = self.inner.event_log_capacity;
        let mut events = Vec::new();
        for b in next.bdbs.values_mut() {
            if let Some(set) = self.inner.directory.passwords(&SetId::BdbDefault(b.uid)) {
                for e in fold(&set, &mut b.password_meta) {
                    events.push(Event { bdb_uid: Some(b.uid), ..e });
                }
            }
        }
        for u in next.users.values_mut() {
            if let Some(set) = self.inner.directory.passwords(&SetId::User(u.name.as_str().into())) {
                for e in fold(&set, &mut u.password_meta) {
                    events.push(Event { user: Some(u.name.clone()), user_uid: Some(u.uid), ..e });
                }
            }
        }
        for e in events {
            next.events.push_admin(e, capacity);
        }
    }

    /// Whether some password authenticated since the last write.
    pub(super) fn usage_changed(&self) -> bool {
        let snap = self.snapshot();
        let d = &self.inner.directory;
        let stale = |set: Option<std::sync::Arc<PasswordSet>>, meta: &[PasswordMeta]| {
            set.is_some_and(|s| {
                meta.iter().any(|m| s.entry(&m.id).is_some_and(|u| u.last_used_ms() > m.last_used_ms))
            })
        };
        snap.bdbs.values().any(|b| stale(d.passwords(&SetId::BdbDefault(b.uid)), &b.password_meta))
            || snap
                .users
                .values()
                .any(|u| stale(d.passwords(&SetId::User(u.name.as_str().into())), &u.password_meta))
    }

    /// Writes changed `last_used` times, if any (a commit of the unchanged state
    /// carries them).
    pub async fn flush_usage(&self) {
        if !self.usage_changed() {
            return;
        }
        self.commit_pending("password usage").await;
    }
}

/// Moves `set`'s newer `last_used` times into `meta`; an event for each entry
/// used for the first time.
fn fold(set: &PasswordSet, meta: &mut [PasswordMeta]) -> Vec<Event> {
    let mut out = Vec::new();
    for m in meta.iter_mut() {
        let Some(u) = set.entry(&m.id) else { continue };
        let Some(t) = u.last_used_ms() else { continue };
        if m.last_used_ms.is_some_and(|s| s >= t) {
            continue;
        }
        if m.last_used_ms.is_none() {
            let (first, peer) = u.first_use().unwrap_or((t, None));
            let mut e = Event::new("password_first_used", first);
            e.address = peer.map(|p| p.to_string());
            e.password_ids = vec![m.id.clone()];
            out.push(e);
        }
        m.last_used_ms = Some(t);
    }
    out
}

/// The rotation GET of one set: its entries and its schedule.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PasswordsView {
    /// Every password of the set, oldest first; never a password or a hash.
    pub passwords: Vec<rotation::EntryView>,
    /// The scheduled `expire_old_after`, if any.
    pub expiry: Option<rotation::ExpiryView>,
}

impl Control {
    /// `GET /v1/bdbs/{uid}/passwords`.
    pub fn bdb_passwords(&self, uid: u32) -> Option<PasswordsView> {
        let snap = self.snapshot();
        let b = snap.bdbs.get(&uid)?;
        self.passwords_view(&SetId::BdbDefault(uid), &b.password_meta, b.password_expiry.as_ref())
    }

    /// `GET /v1/users/{uid}/passwords`.
    pub fn user_passwords(&self, uid: u32) -> Option<PasswordsView> {
        let snap = self.snapshot();
        let u = snap.users.get(&uid)?;
        self.passwords_view(
            &SetId::User(u.name.as_str().into()),
            &u.password_meta,
            u.password_expiry.as_ref(),
        )
    }

    fn passwords_view(
        &self,
        id: &SetId,
        meta: &[PasswordMeta],
        expiry: Option<&crate::store::state::PasswordExpiry>,
    ) -> Option<PasswordsView> {
        let set = self.inner.directory.passwords(id)?;
        let clients = self.clients_of(&set);
        Some(PasswordsView {
            passwords: rotation::entries(&set, meta, expiry, &clients),
            expiry: expiry.map(rotation::ExpiryView::of),
        })
    }
}
