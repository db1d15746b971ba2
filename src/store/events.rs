//! The event log as stored: bounded rings of events (who changed which password
//! when, failed AUTHs, lockouts), written in the same atomic store write as the
//! change they describe. Never a password or a hash.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Events kept per ring unless configured otherwise.
pub const DEFAULT_CAPACITY: usize = 1000;

/// Two rings, each bounded by the configured capacity, so that a storm of failed
/// AUTHs can never push out the record of administrative changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLog {
    /// Administrative changes: passwords, users, databases, lockouts.
    #[serde(default)]
    pub admin: VecDeque<Event>,
    /// From the data path: aggregated failed AUTHs, throttled addresses.
    #[serde(default)]
    pub security: VecDeque<Event>,
    /// Sequence number of the next event; orders events within one second.
    #[serde(default)]
    pub next_seq: u64,
}

impl EventLog {
    pub fn push_admin(&mut self, event: Event, capacity: usize) {
        let e = self.numbered(event);
        push_bounded(&mut self.admin, e, capacity);
    }

    pub fn push_security(&mut self, event: Event, capacity: usize) {
        let e = self.numbered(event);
        push_bounded(&mut self.security, e, capacity);
    }

    fn numbered(&mut self, mut event: Event) -> Event {
        event.seq = self.next_seq;
        self.next_seq += 1;
        event
    }

    /// Every event, oldest first.
    pub fn all(&self) -> Vec<Event> {
        let mut v: Vec<Event> = self.admin.iter().chain(self.security.iter()).cloned().collect();
        v.sort_by_key(|e| (e.time_ms, e.seq));
        v
    }
}

fn push_bounded(ring: &mut VecDeque<Event>, event: Event, capacity: usize) {
    ring.push_back(event);
    while ring.len() > capacity.max(1) {
        ring.pop_front();
    }
}

/// One event. Optional fields are those its type has (RS's events carry their own
/// fields too, besides `time` and `type`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub seq: u64,
    /// Unix milliseconds (shown as ISO 8601 seconds). Milliseconds order a failed
    /// AUTH written with a later change before that change.
    pub time_ms: u64,
    /// `password_added`, `password_removed`, `passwords_replaced`, `bdb_created`,
    /// `bdb_deleted`, `user_created`, `user_deleted`, `user_locked`,
    /// `redis_acl_created`, `redis_acl_updated`, `redis_acl_deleted`, `auth_failed`,
    /// `address_throttled`, `auth_failures_dropped`, `password_first_used`,
    /// `password_expiry_scheduled`, `password_expiry_cancelled`, `passwords_expired`,
    /// `primary_switched`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The admin API user who made the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bdb_uid: Option<u32>,
    /// The user concerned (for `auth_failed`: the name the client gave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_uid: Option<u32>,
    /// The `redis_acl` concerned (`redis_acl_created`, `…_updated`, `…_deleted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_acl_uid: Option<u32>,
    /// The client's address (data-path events); for `primary_switched`, the new
    /// primary's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// For `primary_switched`: the primary before, if one was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_address: Option<String>,
    /// How many times it happened (aggregated events), and when last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time_ms: Option<u64>,
    /// The fleet node where it happened (absent with a store of one node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    /// Nodes concerned (`change_unconfirmed`: those that had not applied it in time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<u32>>,
    /// When something scheduled is due (`password_expiry_scheduled`), Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
    /// The passwords concerned, by public id (never the password or a hash).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub password_ids: Vec<String>,
}

impl Event {
    pub fn new(kind: &str, time_ms: u64) -> Self {
        Self { kind: kind.to_string(), time_ms, ..Self::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_are_bounded_separately() {
        let mut log = EventLog::default();
        for t in 0..15 {
            log.push_admin(Event::new("password_added", t), 10);
        }
        for t in 0..100 {
            log.push_security(Event::new("auth_failed", t), 10);
        }
        assert_eq!(log.admin.len(), 10);
        assert_eq!(log.admin.front().unwrap().time_ms, 5, "the oldest go first");
        assert_eq!(log.security.len(), 10);
        assert_eq!(log.next_seq, 115);
        let all = log.all();
        assert_eq!(all.len(), 20);
        assert!(all.windows(2).all(|w| (w[0].time_ms, w[0].seq) <= (w[1].time_ms, w[1].seq)));
    }

    #[test]
    fn a_store_without_events_loads() {
        let log: EventLog = serde_json::from_str("{}").unwrap();
        assert_eq!(log, EventLog::default());
    }
}
