//! Rotation you can see: the public side of password sets (ids, labels, who added
//! each and when), the usage guard on deletion, and `expire_old_after` schedules.
//! Pure functions over the stored records and the in-memory sets; the control
//! plane's password operations call them between "compute" and "persist".

use std::collections::HashMap;

use serde::Serialize;

use super::error::{Error, Kind, Result};
use crate::auth::{PasswordSet, SetChange, Usage};
use crate::proxy::registry::ClientSample;
use crate::store::state::{PasswordExpiry, PasswordMeta};
use crate::time;

/// At most this many clients are listed per password (its `connections` counts all).
pub const MAX_CLIENTS_SHOWN: usize = 10;
/// Longest label accepted.
pub const MAX_LABEL: usize = 128;
/// Longest delay `expire_old_after` and window `unless_used_within` accept: ten years.
pub const MAX_SECONDS: u64 = 10 * 365 * 86_400;

/// Which password a DELETE names, or the schedule it cancels.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Password(&'a str),
    Id(&'a str),
    /// `{"cancel_expiry": true}`: nothing leaves the set, the schedule goes.
    Expiry,
}

/// One password operation, as the admin API received it.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub op: SetChange,
    pub target: Target<'a>,
    pub label: Option<&'a str>,
    /// DELETE: refuse if the password authenticated a connection this recently
    /// (seconds) or still has open connections.
    pub unless_used_within: Option<u64>,
    /// POST: remove every other password of the set after this many seconds.
    pub expire_old_after: Option<u64>,
}

impl<'a> Change<'a> {
    /// A plain RS operation on a password.
    pub fn plain(op: SetChange, password: &'a str) -> Self {
        Self {
            op,
            target: Target::Password(password),
            label: None,
            unless_used_within: None,
            expire_old_after: None,
        }
    }

    /// Refuses options that make no sense for the method.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::bad_request("invalid_parameter", what.to_string()));
        if self.expire_old_after.is_some() && self.op != SetChange::Add {
            return bad("expire_old_after is accepted only when adding a password (POST)");
        }
        if self.unless_used_within.is_some() && self.op != SetChange::Remove {
            return bad("unless_used_within is accepted only when deleting a password (DELETE)");
        }
        if self.label.is_some() && self.op == SetChange::Remove {
            return bad("label is accepted only when adding or replacing a password");
        }
        if let Some(l) = self.label
            && (l.chars().count() > MAX_LABEL || l.chars().any(char::is_control))
        {
            return bad("label: at most 128 characters, none of them control characters");
        }
        for (name, v) in
            [("expire_old_after", self.expire_old_after), ("unless_used_within", self.unless_used_within)]
        {
            if v.is_some_and(|s| s > MAX_SECONDS) {
                return Err(Error::bad_request(
                    "invalid_parameter",
                    format!("{name}: at most {MAX_SECONDS} seconds"),
                ));
            }
        }
        match (self.op, self.target) {
            (SetChange::Remove, _) | (_, Target::Password(_)) => Ok(()),
            _ => bad("password is required"),
        }
    }
}

/// One password as the rotation GET (and a 409) shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EntryView {
    pub id: String,
    pub label: Option<String>,
    /// When it was added (ISO 8601, UTC).
    pub created: String,
    /// The admin API user who added it (null: from the config file or before ids).
    pub creator: Option<String>,
    /// Its last successful AUTH (ISO 8601, UTC), null if none seen.
    pub last_used: Option<String>,
    /// Connections authenticated with it and open now.
    pub connections: u64,
    /// Some of those connections (at most 10).
    pub clients: Vec<ClientView>,
    /// When it leaves the set by itself (`expire_old_after`), if scheduled.
    pub expires: Option<String>,
}

/// One connection using a password.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    /// `ip:port` of the client.
    pub address: Option<String>,
    /// `CLIENT SETNAME` (or `HELLO … SETNAME`).
    pub name: Option<String>,
    /// `CLIENT SETINFO LIB-NAME`.
    pub lib_name: Option<String>,
}

/// A scheduled expiry as the GET shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExpiryView {
    /// When (ISO 8601, UTC).
    pub at: String,
    /// The password that stays.
    pub keep: String,
    /// The passwords that go.
    pub remove: Vec<String>,
    pub by: Option<String>,
}

impl ExpiryView {
    pub fn of(e: &PasswordExpiry) -> Self {
        Self { at: iso_ms(e.at_ms), keep: e.keep.clone(), remove: e.remove.clone(), by: e.by.clone() }
    }
}

/// ISO 8601 of Unix milliseconds, rounded up so a time shown is never early.
fn iso_ms(ms: u64) -> String {
    time::iso8601(ms.div_ceil(1000))
}

/// The clients of every password, by entry id, bounded per entry.
pub type Clients = HashMap<String, Vec<ClientSample>>;

/// Adds `sample` to `clients` unless its entry has enough already.
pub fn collect(clients: &mut Clients, id: &str, sample: ClientSample) {
    let v = clients.entry(id.to_string()).or_default();
    if v.len() < MAX_CLIENTS_SHOWN {
        v.push(sample);
    }
}

/// The GET's entries of a set: its stored metadata joined with live usage.
pub fn entries(
    set: &PasswordSet,
    meta: &[PasswordMeta],
    expiry: Option<&PasswordExpiry>,
    clients: &Clients,
) -> Vec<EntryView> {
    set.entries()
        .iter()
        .map(|u| {
            let m = meta.iter().find(|m| m.id == u.id());
            entry_view(u, m, expiry, clients.get(u.id()).map_or(&[][..], Vec::as_slice))
        })
        .collect()
}

fn entry_view(
    u: &Usage,
    m: Option<&PasswordMeta>,
    expiry: Option<&PasswordExpiry>,
    clients: &[ClientSample],
) -> EntryView {
    let last = u.last_used_ms().max(m.and_then(|m| m.last_used_ms));
    EntryView {
        id: u.id().to_string(),
        label: m.and_then(|m| m.label.clone()),
        created: time::iso8601(m.map_or(0, |m| m.created)),
        creator: m.and_then(|m| m.creator.clone()),
        last_used: last.map(|t| time::iso8601(t / 1000)),
        connections: u.connections(),
        clients: clients
            .iter()
            .map(|c| ClientView {
                address: c.address.map(|a| a.to_string()),
                name: c.names.name.clone(),
                lib_name: c.names.lib_name.clone(),
            })
            .collect(),
        expires: expiry.filter(|e| e.remove.iter().any(|r| r == u.id())).map(|e| iso_ms(e.at_ms)),
    }
}

/// The guard: refuses (409 `password_in_use`, with the usage) to remove a password
/// that has open connections or authenticated one within `window` seconds.
pub fn guard(
    current: &PasswordSet,
    removed: &[String],
    meta: &[PasswordMeta],
    window: u64,
    clients: &Clients,
) -> Result<()> {
    let since = time::now_ms().saturating_sub(window.saturating_mul(1000));
    let busy: Vec<EntryView> = removed
        .iter()
        .filter_map(|id| current.entry(id))
        .filter(|u| {
            let m = meta.iter().find(|m| m.id == u.id());
            let last = u.last_used_ms().max(m.and_then(|m| m.last_used_ms));
            u.connections() > 0 || last.is_some_and(|t| t >= since)
        })
        .map(|u| {
            let m = meta.iter().find(|m| m.id == u.id());
            entry_view(u, m, None, clients.get(u.id()).map_or(&[][..], Vec::as_slice))
        })
        .collect();
    if busy.is_empty() {
        return Ok(());
    }
    let e = &busy[0];
    let mut err = Error::new(
        Kind::Conflict,
        "password_in_use",
        format!(
            "password {} has {} open connection(s) and was last used {}; not deleted (unless_used_within = {window} s)",
            e.id,
            e.connections,
            e.last_used.as_deref().unwrap_or("never")
        ),
    );
    err.detail = serde_json::to_value(&busy).ok();
    Err(err)
}

/// The ids in `before` that are not in `after`.
pub fn removed(before: &PasswordSet, after: &PasswordSet) -> Vec<String> {
    before.entries().iter().filter(|e| after.entry(e.id()).is_none()).map(|e| e.id().to_string()).collect()
}

/// The metadata of `set`, in its order: what `old` had for the entries that stay,
/// `fresh` for the new ones.
pub fn reconcile(
    set: &PasswordSet,
    old: &[PasswordMeta],
    fresh: impl Fn(&str) -> PasswordMeta,
) -> Vec<PasswordMeta> {
    set.entries()
        .iter()
        .map(|e| old.iter().find(|m| m.id == e.id()).cloned().unwrap_or_else(|| fresh(e.id())))
        .collect()
}

/// A loaded set with the ids of `meta`; `None` if `meta` does not describe it (a
/// store written before ids existed) and new metadata must be written.
pub fn restore_ids(set: PasswordSet, meta: &[PasswordMeta]) -> (PasswordSet, Option<Vec<PasswordMeta>>) {
    if meta.len() == set.len() {
        let ids: Vec<(&str, Option<u64>)> = meta.iter().map(|m| (m.id.as_str(), m.last_used_ms)).collect();
        return (set.with_ids(&ids), None);
    }
    let now = time::now();
    let made =
        reconcile(&set, &[], |id| PasswordMeta { id: id.to_string(), created: now, ..Default::default() });
    (set, Some(made))
}

/// The schedule after an operation: a POST with `expire_old_after` schedules the
/// removal of every password there was before it; a PUT leaves nothing to expire;
/// removing the password a schedule keeps cancels it (the rotation is abandoned),
/// removing others takes them off it.
pub fn next_expiry(
    change: &Change<'_>,
    before: &PasswordSet,
    after: &PasswordSet,
    current: Option<&PasswordExpiry>,
    by: Option<&str>,
) -> Option<PasswordExpiry> {
    match (change.op, change.target) {
        (SetChange::Replace, _) | (SetChange::Remove, Target::Expiry) => None,
        (SetChange::Add, _) => match change.expire_old_after {
            Some(secs) => {
                let added = after.entries().iter().find(|e| before.entry(e.id()).is_none())?;
                Some(PasswordExpiry {
                    at_ms: time::now_ms().saturating_add(secs.saturating_mul(1000)),
                    keep: added.id().to_string(),
                    remove: before.entries().iter().map(|e| e.id().to_string()).collect(),
                    by: by.map(str::to_string),
                })
            }
            None => current.cloned(),
        },
        (SetChange::Remove, _) => {
            let mut e = current?.clone();
            // The password the schedule keeps went: the rotation is abandoned.
            after.entry(&e.keep)?;
            e.remove.retain(|id| after.entry(id).is_some());
            (!e.remove.is_empty()).then_some(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::HashParams;

    fn set(n: u8) -> PasswordSet {
        (0..n).fold(PasswordSet::empty(HashParams::default()), |s, i| s.with_added([i; 32]))
    }

    #[test]
    fn a_post_with_expiry_schedules_the_others() {
        let before = set(2);
        let after = before.with_added([9; 32]);
        let c = Change { expire_old_after: Some(60), ..Change::plain(SetChange::Add, "x") };
        let e = next_expiry(&c, &before, &after, None, Some("admin")).unwrap();
        assert_eq!(e.keep, after.entries()[2].id());
        assert_eq!(e.remove.len(), 2);
        assert!(e.at_ms >= time::now_ms() + 59_000);
        // Deleting one of the old ones leaves the other scheduled; deleting the new
        // one cancels.
        let fewer = after.with_removed(&[0; 32]);
        let d = Change::plain(SetChange::Remove, "x");
        assert_eq!(
            next_expiry(&d, &after, &fewer, Some(&e), None).unwrap().remove,
            vec![after.entries()[1].id()]
        );
        let rollback = after.with_removed(&[9; 32]);
        assert!(next_expiry(&d, &after, &rollback, Some(&e), None).is_none());
    }

    #[test]
    fn options_belong_to_their_method() {
        assert!(
            Change { expire_old_after: Some(1), ..Change::plain(SetChange::Remove, "x") }.validate().is_err()
        );
        assert!(
            Change { unless_used_within: Some(1), ..Change::plain(SetChange::Add, "x") }.validate().is_err()
        );
        assert!(Change { label: Some("a\nb"), ..Change::plain(SetChange::Add, "x") }.validate().is_err());
        assert!(
            Change { target: Target::Id("pw-1"), ..Change::plain(SetChange::Remove, "x") }.validate().is_ok()
        );
        assert!(
            Change { target: Target::Id("pw-1"), ..Change::plain(SetChange::Add, "x") }.validate().is_err()
        );
    }

    #[test]
    fn the_guard_refuses_a_busy_password() {
        let s = set(2);
        let id = s.entries()[0].id().to_string();
        assert!(guard(&s, std::slice::from_ref(&id), &[], 60, &Clients::new()).is_ok());
        s.entries()[0].authenticated(None, time::now_ms());
        let e = guard(&s, std::slice::from_ref(&id), &[], 60, &Clients::new()).unwrap_err();
        assert_eq!((e.kind, e.code), (Kind::Conflict, "password_in_use"));
        assert_eq!(e.detail.unwrap()[0]["id"], id.as_str());
    }
}
