//! Where a client's forwarded requests go: a lane of its rule and protocol while it
//! sends only stateless commands, else a connection of its own, logged in as the
//! turnstile user of its rule (see [`super::users`]). Also follows changes of the
//! client's rights: a lane of the new rule at once, or a close.

use std::sync::Arc;

use bytes::Bytes;

use super::Upstream;
use super::client::{ClientHalf, Conn, Own, Shared};
use super::handshake::UpstreamError;
use super::io::UpstreamRead;
use super::lane::{Batch, Lane};
use super::mailbox::{self, Mailbox};
use super::plan::{Entry, Tag};
use crate::resp::replies;

/// Where a forwarded stateless request goes.
pub(super) enum Route {
    Lane,
    Own,
    /// No upstream could be reached; the client was told and the connection is closing.
    Failed,
    /// No lane could be had, and the client stays (a Sentinel-managed database
    /// during a failover): this request is answered with the error.
    Refused(UpstreamError),
}

/// How many nodes that turn out not to be the primary a new connection tries
/// before it gives up (each one retired, the next verified primary waited for).
const NOT_PRIMARY_TRIES: usize = 3;

impl ClientHalf {
    /// Re-reads the identity's rights if the directory changed since. False if
    /// the connection must close: the identity lost its access here, or its rule
    /// changed while it holds a connection of its own (logged in with the old one).
    /// One atomic load when nothing changed.
    pub(super) fn refresh_grant(&mut self) -> bool {
        let now = self.ctx.directory.generation();
        if now == self.generation {
            return true;
        }
        self.generation = now;
        let Some(id) = &self.identity else { return true };
        match self.ctx.directory.grant(self.ctx.uid, id) {
            None => false,
            Some(g) => {
                let moved = self.grant.as_ref().is_some_and(|old| old.key != g.key);
                self.grant = Some(g);
                !(moved && matches!(self.conn, Conn::Own(_)))
            }
        }
    }

    /// Whether a stateless request can go to a lane: yes if the client has one of
    /// its rule and protocol (or one can be had), no if the database does not share
    /// connections or the client does not keep up with its replies.
    pub(super) async fn route(&mut self) -> Route {
        if let Conn::Lane(s) = &self.conn {
            if s.mailbox.backlog() > mailbox::BACKLOG_SOFT {
                // The client is not reading its replies: let Redis buffer for it on
                // a connection of its own, as it would without turnstile.
                return Route::Own;
            }
            let key = self.grant.as_ref().map(|g| g.key);
            if s.lane.is_open() && s.lane.resp3() == self.resp3 && Some(s.lane.key()) == key {
                return Route::Lane;
            }
        }
        // Once per client (and after a lane ends or the rule changes), and large: boxed.
        Box::pin(self.join_lane()).await
    }

    async fn join_lane(&mut self) -> Route {
        // Changing lanes (another protocol or rule, a changed upstream): what went
        // on the old one is answered first, so the client's commands take effect
        // in order.
        if let Conn::Lane(s) = &self.conn {
            s.mailbox.wait_in_flight_below(1).await;
        }
        match self.lane_on_primary(self.resp3).await {
            Ok(Some((upstream, lane))) => {
                match &mut self.conn {
                    Conn::Lane(s) => s.lane = lane,
                    _ => {
                        let mailbox = Arc::new(Mailbox::new(
                            upstream.pool.output,
                            self.slot.kill_switch(),
                            Arc::clone(&self.ctx.lane_replies),
                        ));
                        mailbox.set_shown(Arc::from(self.shown_name()));
                        self.push(Entry::Mailbox(Arc::clone(&mailbox)));
                        self.conn = Conn::Lane(Shared { lane, mailbox });
                    }
                }
                Route::Lane
            }
            Ok(None) => Route::Own,
            Err(e) if self.ctx.upstream().sentinel.is_some() => {
                crate::metrics::inc(&self.ctx.stats.upstream_connect_errors);
                self.ctx.failover.nudge();
                Route::Refused(e)
            }
            Err(e) => {
                self.upstream_failed(e);
                Route::Failed
            }
        }
    }

    /// A lane of the client's rule and protocol on the database's upstream now (a
    /// client whose lane ended, or that changes protocol, after the upstream
    /// changed moves to the new one) — for a Sentinel-managed database, on its
    /// verified primary. `None`: the client needs a connection of its own.
    async fn lane_on_primary(&self, resp3: bool) -> Result<Option<(Arc<Upstream>, Lane)>, UpstreamError> {
        let Some(grant) = self.grant.clone() else { return Ok(None) };
        let mut tries = 0;
        loop {
            let upstream = self.ctx.primary().await?;
            // TLS upstream connections are not shared: a lane relies on reading the
            // socket's readiness, which a TLS stream does not expose.
            if upstream.pool.shared == 0 || upstream.tls {
                return Ok(None);
            }
            match self.ctx.lanes.get(&upstream, &grant, resp3, &self.ctx.users).await {
                Ok(lane) => return Ok(Some((upstream, lane))),
                // An upstream without RESP3: HELLO 3 goes to a connection of its own.
                Err(UpstreamError::NoProto) => return Ok(None),
                Err(UpstreamError::NotPrimary) if tries < NOT_PRIMARY_TRIES => {
                    tries += 1;
                    self.ctx.failover.retire(&upstream);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Tells the client why it has no upstream, and closes.
    fn upstream_failed(&mut self, e: UpstreamError) {
        crate::metrics::inc(&self.ctx.stats.upstream_connect_errors);
        if self.ctx.upstream().sentinel.is_some() {
            self.ctx.failover.nudge();
        }
        self.push(Entry::Local(Bytes::from_static(e.reply())));
        self.push(Entry::Close);
    }

    /// Hands `n` complete requests to the client's lane, after planning their
    /// replies. An error ends the connection (the relay tells the client why).
    pub(super) async fn send_shared(&mut self, bytes: Bytes, n: u64) -> std::io::Result<()> {
        let Conn::Lane(s) = &self.conn else {
            return Err(std::io::Error::other("no shared connection"));
        };
        let mailbox = Arc::clone(&s.mailbox);
        self.plan.wait_for_space().await;
        self.push_pending();
        if !mailbox.send(n).await {
            return Err(std::io::Error::other("shared upstream connection lost"));
        }
        let mut batch = Batch { bytes, n, mailbox };
        for _ in 0..2 {
            let lane = match &self.conn {
                Conn::Lane(s) => s.lane.clone(),
                _ => break,
            };
            match lane.send(batch).await {
                Ok(()) => return Ok(()),
                // The lane ended before taking it: nothing was sent, so the next
                // lane may take it.
                Err(b) => batch = b,
            }
            // Boxed: rare (the lane ended), and its future (a connect, a login) is
            // ~2 KiB that every send would otherwise carry.
            match Box::pin(self.lane_on_primary(lane.resp3())).await {
                Ok(Some((_, lane))) => {
                    if let Conn::Lane(s) = &mut self.conn {
                        s.lane = lane;
                    }
                }
                Ok(None) => break,
                Err(e) => return self.batch_failed(batch, e.reply()),
            }
        }
        self.batch_failed(batch, replies::UPSTREAM_LOST)
    }

    /// Answers the requests of the current run meant for a lane with `reply`,
    /// unsent (no lane can be had): through the mailbox, in their place.
    pub(super) async fn fail_pending(&mut self, reply: &'static [u8]) {
        let n = std::mem::take(&mut self.shared_pending);
        let Conn::Lane(s) = &self.conn else { return };
        if n == 0 {
            return;
        }
        let mailbox = Arc::clone(&s.mailbox);
        self.plan.wait_for_space().await;
        self.push_pending();
        if mailbox.send(n).await {
            mailbox.fail(n, reply);
        }
    }

    /// A batch no lane took. A Sentinel-managed database's client stays: each
    /// request gets the error. Otherwise the client is told and closed.
    fn batch_failed(&self, batch: Batch, reply: &'static [u8]) -> std::io::Result<()> {
        if self.ctx.upstream().sentinel.is_some() {
            self.ctx.failover.nudge();
            batch.mailbox.fail(batch.n, reply);
            return Ok(());
        }
        batch.mailbox.lose(reply);
        Err(std::io::Error::other("no shared upstream connection"))
    }

    /// Opens the client's own upstream connection on first use, logged in as its
    /// rule's user. On failure plans an error reply and a close, and returns false.
    pub(super) async fn ensure_upstream(&mut self) -> std::io::Result<bool> {
        if matches!(self.conn, Conn::Own(_)) {
            return Ok(true);
        }
        // Once per connection, and large (connect with a timeout): boxed.
        Box::pin(self.open_upstream()).await
    }

    async fn open_upstream(&mut self) -> std::io::Result<bool> {
        // Requests sent on the lane take effect first: a client's commands reach
        // Redis in the order it sent them, whichever connection carries them.
        if let Conn::Lane(s) = &self.conn {
            s.mailbox.wait_in_flight_below(1).await;
        }
        let Some(grant) = self.grant.clone() else {
            // Only authenticated clients forward anything.
            self.upstream_failed(UpstreamError::Unavailable);
            return Ok(false);
        };
        let mut tries = 0;
        let upstream = loop {
            let upstream = match self.ctx.primary().await {
                Ok(u) => u,
                Err(e) => {
                    self.upstream_failed(e);
                    return Ok(false);
                }
            };
            // A connection a previous client of the same rule left clean (reset and
            // logged in already).
            if let Some(cred) = self.ctx.users.cached(&upstream, &grant)
                && let Some(conn) = self.ctx.pool.take(&upstream, grant.key)
            {
                self.attach_node(&upstream);
                self.push(Entry::Attach(UpstreamRead::Tcp(conn.reader)));
                self.slot.set_own_rule(Some(grant.key));
                let writer = super::io::UpstreamWrite::Tcp(conn.writer);
                self.conn = Conn::Own(Own { writer, upstream, login: Some((grant, cred)) });
                return self.resume_resp3().await;
            }
            match self.ctx.users.session(&upstream, &grant, false).await {
                Err(UpstreamError::NotPrimary) if tries < NOT_PRIMARY_TRIES => {
                    tries += 1;
                    self.ctx.failover.retire(&upstream);
                }
                session => break (upstream, session),
            }
        };
        let (upstream, session) = upstream;
        match session {
            Ok((reader, writer, cred)) => {
                self.attach_node(&upstream);
                self.push(Entry::Attach(reader));
                self.slot.set_own_rule(Some(grant.key));
                self.conn = Conn::Own(Own { writer, upstream, login: Some((grant, cred)) });
                self.resume_resp3().await
            }
            Err(e) => {
                tracing::warn!(error = %e, upstream = %upstream.address, "upstream unavailable");
                self.upstream_failed(e);
                Ok(false)
            }
        }
    }

    /// A connection of its own to a Sentinel-managed node ends when the node is
    /// retired (the relay tells the client as Redis would, then closes).
    fn attach_node(&mut self, upstream: &Upstream) {
        if upstream.sentinel.is_some() {
            self.push(Entry::Node(upstream.retired.clone()));
        }
    }

    /// Whether the client's own connection is logged in as someone else than its
    /// current rule's user (after a `RESET`, or an `AUTH` as another user), outside
    /// a transaction (inside one Redis would queue the login).
    pub(super) fn needs_login(&self) -> bool {
        let (Conn::Own(own), Some(grant)) = (&self.conn, &self.grant) else { return false };
        !self.in_multi && own.login.as_ref().is_none_or(|(g, _)| g.key != grant.key)
    }

    /// Logs the client's own connection in as its current rule's user (see
    /// [`Self::needs_login`]): the AUTH goes before the client's next request, its
    /// `+OK` unseen. The caller flushed what was to go before it.
    pub(super) async fn ensure_login(&mut self) -> std::io::Result<bool> {
        // Rare (after a RESET or an AUTH as another user), and its future (~2 KiB,
        // the credential's reconcile) would sit in every read's: boxed.
        Box::pin(self.login_own()).await
    }

    async fn login_own(&mut self) -> std::io::Result<bool> {
        let Conn::Own(own) = &self.conn else { return Ok(true) };
        let Some(grant) = self.grant.clone() else { return Ok(true) };
        let upstream = Arc::clone(&own.upstream);
        let cred = match self.ctx.users.credential(&upstream, &grant).await {
            Ok(c) => c,
            Err(e) => {
                self.upstream_failed(e.upstream());
                return Ok(false);
            }
        };
        self.push(Entry::Swallow);
        let auth = cred.auth_command();
        self.write_own(&auth).await?;
        self.slot.set_own_rule(Some(grant.key));
        if let Conn::Own(own) = &mut self.conn {
            own.login = Some((grant, cred));
        }
        Ok(true)
    }

    /// A client that switched to RESP3 on lanes keeps it on its own connection: a
    /// `HELLO 3` goes first, its reply unseen (the relay learns the protocol from it).
    async fn resume_resp3(&mut self) -> std::io::Result<bool> {
        if !self.resp3 {
            return Ok(true);
        }
        self.push(Entry::Replies { n: 1, tag: Tag::Hello, silent: true });
        self.write_own(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n").await?;
        Ok(true)
    }
}
