//! The commands turnstile answers itself (AUTH, HELLO, QUIT, RESET, CLIENT REPLY,
//! the ACL subcommands about its own users) or rewrites before forwarding
//! (`CONFIG GET`, `ACL DRYRUN`).

use std::sync::Arc;

use bytes::Bytes;
use zeroize::Zeroize;

use super::acl;
use super::client::{ClientHalf, Conn, Flow, ReplyMode, reply_mode};
use super::hello;
use super::plan::{Entry, Tag};
use super::users::{AclPerm, Credential};
use crate::auth::Attempt;
use crate::authz::config_get;
use crate::resp::command::Command;
use crate::resp::{encode, replies};

/// A request no Redis knows (a name with a space, no NUL), so Redis answers it with
/// its unknown-command error and, inside MULTI, fails the transaction.
const NOT_A_COMMAND: &[u8] = b"*1\r\n$24\r\nturnstile: not a command\r\n";

impl ClientHalf {
    /// Answers the requests turnstile handles itself.
    pub(super) async fn intercept(&mut self, cmd: Command, args: Vec<Vec<u8>>) -> std::io::Result<Flow> {
        // Wiped however this returns: AUTH and HELLO carry passwords.
        let args = zeroize::Zeroizing::new(args);
        let authenticated = self.identity.is_some();
        match cmd {
            Command::Auth => {
                let reply = match args.len() {
                    0 | 1 => replies::AUTH_ARITY,
                    2 | 3 => {
                        let (user, password) = match args.len() {
                            2 => (None, &args[1]),
                            _ => (Some(args[1].as_slice()), &args[2]),
                        };
                        if self.login(user, password).await { replies::OK } else { replies::WRONGPASS }
                    }
                    _ => replies::SYNTAX,
                };
                self.local(Bytes::from_static(reply));
            }
            Command::Hello => match hello::parse(&args) {
                Err(reply) => self.local(reply),
                Ok(mut h) => {
                    // Option by option, as Redis 7.0's helloCommand: the first that
                    // fails answers the HELLO, and what came before it stands.
                    for step in std::mem::take(&mut h.steps) {
                        let failed = match step {
                            hello::Step::Auth(mut user, mut password) => {
                                let ok = self.login(Some(&user), &password).await;
                                password.zeroize();
                                user.zeroize();
                                (!ok).then_some(replies::WRONGPASS)
                            }
                            hello::Step::SetName(name) if hello::name_is_valid(&name) => {
                                h.setname = Some(name);
                                None
                            }
                            hello::Step::SetName(_) => Some(replies::BAD_CLIENT_NAME),
                            hello::Step::Syntax(reply) => {
                                self.local(reply);
                                return Ok(Flow::Continue);
                            }
                        };
                        if let Some(reply) = failed {
                            self.local(Bytes::from_static(reply));
                            return Ok(Flow::Continue);
                        }
                    }
                    if self.identity.is_none() {
                        self.local(Bytes::from_static(replies::HELLO_NOAUTH));
                    } else if let Flow::Stop = self.hello(h).await? {
                        return Ok(Flow::Stop);
                    }
                }
            },
            Command::Quit => {
                self.reply_mode = ReplyMode::On;
                self.local(Bytes::from_static(replies::OK));
                self.push(Entry::Close);
                return Ok(Flow::Stop);
            }
            // Redis checks RESET's arity before anything else (authentication
            // included); with a connection of its own the client's `RESET x` went
            // upstream instead (see `process_from`), where it also fails a MULTI.
            Command::Reset if args.len() != 1 => self.local(Bytes::from_static(replies::RESET_ARITY)),
            Command::Reset => return self.reset().await,
            Command::ClientReply
                if authenticated
                    && let Some(refusal) = self.refused(AclPerm::ClientReply, "client|reply").await =>
            {
                // Refused as Redis refuses it; the mode stays as it was.
                self.local(refusal);
            }
            Command::ClientReply if authenticated => match reply_mode(args.get(2).map(Vec::as_slice)) {
                Some(ReplyMode::On) => {
                    self.reply_mode = ReplyMode::On;
                    self.local(Bytes::from_static(replies::OK));
                }
                Some(ReplyMode::Off) => self.reply_mode = ReplyMode::Off,
                Some(ReplyMode::SkipNext) if self.reply_mode == ReplyMode::On => {
                    self.reply_mode = ReplyMode::SkipNext;
                }
                _ => {}
            },
            Command::ClientMaintNotifications if authenticated => {
                let sub = args.get(1).map_or(&b""[..], Vec::as_slice);
                self.local(replies::unknown_subcommand(b"CLIENT", sub));
            }
            Command::AclWhoami | Command::AclUsers | Command::AclList | Command::AclGetuser
                if authenticated =>
            {
                let reply = self.acl_answer(cmd, &args).await;
                self.local(reply);
            }
            Command::AclDryrun if authenticated => return self.dryrun(&args).await,
            Command::ConfigGet if authenticated => {
                let patterns: Vec<&[u8]> = args.iter().skip(2).map(Vec::as_slice).collect();
                let mut out: Vec<Vec<u8>> = vec![b"CONFIG".to_vec(), b"GET".to_vec()];
                // Fewer than one pattern: Redis's own arity error.
                if !patterns.is_empty() {
                    out.extend(config_get::rewrite(&patterns));
                }
                return self.forward_rewritten(&out).await;
            }
            Command::ClientInfo if authenticated => return self.client_info(args.len()).await,
            Command::Ambiguous if authenticated => return self.ambiguous(&args).await,
            // EXEC refused for lack of authentication aborts the transaction: Redis
            // says so in EXECABORT's words.
            Command::Exec => self.local(Bytes::from_static(replies::EXECABORT_NOAUTH)),
            _ => self.local(Bytes::from_static(replies::NOAUTH)),
        }
        Ok(Flow::Continue)
    }

    /// RESET: the client is logged out at turnstile; its own upstream connection
    /// (if any) is reset too (transactions, subscriptions, protocol) and logged in
    /// again before its next command, as whoever it authenticates as then.
    async fn reset(&mut self) -> std::io::Result<Flow> {
        let own = matches!(self.conn, Conn::Own(_));
        if !own {
            // Back to RESP2, as Redis's RESET does (on lanes, a RESP2 lane).
            self.resp3 = false;
        }
        self.proto3 = false;
        self.in_multi = false;
        self.identity = None;
        self.in_use = None;
        self.grant = None;
        self.slot.set_identity(None);
        self.shown_changed().await;
        self.reply_mode = ReplyMode::On;
        if !own {
            self.local(Bytes::from_static(replies::RESET));
            return Ok(Flow::Continue);
        }
        self.dirty = true;
        self.plan_entry(Entry::AwaitReset).await;
        self.write_own(b"*1\r\n$5\r\nRESET\r\n").await?;
        // Redis's RESET logged the session in as its default user: nothing goes
        // upstream before turnstile logs it in again (see `ensure_login`).
        if let Conn::Own(own) = &mut self.conn {
            own.login = None;
        }
        Ok(Flow::Continue)
    }

    /// Forwards a request turnstile rewrote, on the client's own connection.
    async fn forward_rewritten(&mut self, args: &[Vec<u8>]) -> std::io::Result<Flow> {
        if !self.refresh_grant() {
            self.push(Entry::Close);
            return Ok(Flow::Stop);
        }
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let bytes = encode::command(&refs);
        let entry = self.expectation(Command::Other, args.len());
        Ok(if self.forward_own(entry, &bytes).await? { Flow::Continue } else { Flow::Stop })
    }

    /// A request whose name (or `ACL`/`CLIENT`/`CONFIG` subcommand) has a NUL byte
    /// (see [`Command::Ambiguous`]): answered as Redis answers a name it does not
    /// find, in its words. Inside a transaction that also makes Redis refuse the
    /// EXEC (`-EXECABORT`): a command Redis certainly does not know goes upstream in
    /// its place, so Redis marks the transaction itself, and its reply gives way to
    /// the client's own.
    async fn ambiguous(&mut self, args: &[Vec<u8>]) -> std::io::Result<Flow> {
        let reply = match args {
            [name, sub, ..] if !name.contains(&0) => replies::unknown_subcommand(name, sub),
            _ => replies::unknown_command(args),
        };
        // (`forward_own` opens the client's own connection if it somehow has none.)
        if self.in_multi {
            if !self.refresh_grant() {
                self.push(Entry::Close);
                return Ok(Flow::Stop);
            }
            let entry = Entry::Replies { n: 1, tag: Tag::Plain, silent: true };
            if !self.forward_own(entry, NOT_A_COMMAND).await? {
                return Ok(Flow::Stop);
            }
        }
        self.local(reply);
        Ok(Flow::Continue)
    }

    /// `CLIENT INFO`, answered by Redis about the client's own connection, with the
    /// client's name where Redis would show turnstile's upstream user. Inside a
    /// transaction Redis would answer only at EXEC, where turnstile cannot rewrite
    /// it: refused there as a rule without it would be.
    async fn client_info(&mut self, argc: usize) -> std::io::Result<Flow> {
        if argc != 2 {
            self.local(acl::arity("client|info"));
            return Ok(Flow::Continue);
        }
        if self.in_multi {
            let refusal = match self.own_credential().await {
                Ok(c) => c.noperm("client|info", self.shown_name()),
                Err(_) => acl::noperm("client|info", None),
            };
            self.local(refusal);
            return Ok(Flow::Continue);
        }
        if !self.refresh_grant() {
            self.push(Entry::Close);
            return Ok(Flow::Stop);
        }
        self.dirty = true;
        if !self.ensure_upstream().await? || (self.needs_login() && !self.ensure_login().await?) {
            return Ok(Flow::Stop);
        }
        let from = match &self.conn {
            Conn::Own(own) => own.login.as_ref().map(|(_, c)| Arc::clone(&c.name)),
            _ => None,
        };
        let (Some(from), Some(id)) = (from, self.identity.as_ref()) else { return Ok(Flow::Continue) };
        let to: Arc<str> = id.shared_name();
        let silent = match self.expectation(Command::Other, argc) {
            Entry::Replies { silent, .. } => silent,
            _ => false,
        };
        self.plan_entry(Entry::Rewrite { from, to, silent }).await;
        self.write_own(b"*2\r\n$6\r\nCLIENT\r\n$4\r\nINFO\r\n").await?;
        Ok(Flow::Continue)
    }

    /// Redis's refusal, if the client's rule does not grant a command turnstile
    /// implements itself (an upstream that cannot be asked grants nothing).
    async fn refused(&mut self, perm: AclPerm, fullname: &str) -> Option<Bytes> {
        match self.own_credential().await {
            Ok(c) if c.allows(perm) => None,
            Ok(c) => Some(c.noperm(fullname, self.shown_name())),
            Err(_) => Some(acl::noperm(fullname, None)),
        }
    }

    /// The name Redis would show for the client's user.
    pub(super) fn shown_name(&self) -> &str {
        self.identity.as_ref().map_or("default", |i| i.name())
    }

    /// The client's user changed (AUTH, HELLO AUTH, RESET): replies from here on
    /// show the new name where Redis 7.2+ names turnstile's upstream user. On a
    /// lane, once the requests already sent have been answered (they ran as the
    /// user before).
    async fn shown_changed(&mut self) {
        let name: Arc<str> =
            self.identity.as_ref().map_or_else(crate::auth::default_user_name, |i| i.shared_name());
        self.push(Entry::Shown(Arc::clone(&name)));
        if let Conn::Lane(s) = &self.conn {
            s.mailbox.wait_in_flight_below(1).await;
            s.mailbox.set_shown(name);
        }
    }

    /// The credential of the client's rule (its upstream user made if needed).
    async fn own_credential(&mut self) -> Result<Arc<Credential>, Bytes> {
        if !self.refresh_grant() {
            return Err(Bytes::from_static(replies::UPSTREAM_LOST));
        }
        let grant = self.grant.clone().ok_or(Bytes::from_static(replies::NOAUTH))?;
        let upstream = self.ctx.upstream_full();
        self.ctx
            .users
            .credential(&upstream, &grant)
            .await
            .map_err(|e| Bytes::from_static(e.upstream().reply()))
    }

    /// `ACL WHOAMI | USERS | LIST | GETUSER`, about turnstile's users of this
    /// database, if the client's rule grants the subcommand (Redis decides, through
    /// `ACL DRYRUN` on the rule's upstream user).
    async fn acl_answer(&mut self, cmd: Command, args: &[Vec<u8>]) -> Bytes {
        let (name, argc, perm) = match cmd {
            Command::AclWhoami => ("acl|whoami", 2, AclPerm::Whoami),
            Command::AclUsers => ("acl|users", 2, AclPerm::Users),
            Command::AclList => ("acl|list", 2, AclPerm::List),
            _ => ("acl|getuser", 3, AclPerm::Getuser),
        };
        if args.len() != argc {
            return acl::arity(name);
        }
        let cred = match self.own_credential().await {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        if !cred.allows(perm) {
            return cred.noperm(name, self.shown_name());
        }
        let users = self.ctx.directory.users_of(self.ctx.uid);
        match cmd {
            Command::AclWhoami => {
                let me = self.identity.as_ref().map_or("default", |i| i.name());
                replies::bulk(me.as_bytes())
            }
            Command::AclUsers => acl::strings(&users.iter().map(|(n, _)| n.as_bytes()).collect::<Vec<_>>()),
            Command::AclList => {
                let upstream = self.ctx.upstream_full();
                let mut lines = Vec::with_capacity(users.len());
                for (n, g) in &users {
                    match self.ctx.users.credential(&upstream, g).await {
                        Ok(c) => lines.push(format!("user {n} {}", c.description)),
                        Err(e) => return Bytes::from_static(e.upstream().reply()),
                    }
                }
                acl::strings(&lines)
            }
            _ => {
                let Some((_, g)) = users.iter().find(|(n, _)| n.as_bytes() == args[2].as_slice()) else {
                    return acl::null(self.proto3);
                };
                let upstream = self.ctx.upstream_full();
                match self.ctx.users.credential(&upstream, g).await {
                    Ok(c) => {
                        c.details.as_ref().map_or(acl::null(self.proto3), |d| acl::getuser(d, self.proto3))
                    }
                    Err(e) => Bytes::from_static(e.upstream().reply()),
                }
            }
        }
    }

    /// `ACL DRYRUN <user> <command…>`: Redis answers, about the upstream user of
    /// that user's rule on this database, if the client's rule grants DRYRUN.
    async fn dryrun(&mut self, args: &[Vec<u8>]) -> std::io::Result<Flow> {
        if args.len() < 4 {
            self.local(acl::arity("acl|dryrun"));
            return Ok(Flow::Continue);
        }
        let cred = match self.own_credential().await {
            Ok(c) => c,
            Err(reply) => {
                self.local(reply);
                return Ok(Flow::Continue);
            }
        };
        if !cred.allows(AclPerm::Dryrun) {
            self.local(cred.noperm("acl|dryrun", self.shown_name()));
            return Ok(Flow::Continue);
        }
        let users = self.ctx.directory.users_of(self.ctx.uid);
        let Some((_, g)) = users.iter().find(|(n, _)| n.as_bytes() == args[2].as_slice()) else {
            self.local(acl::user_not_found(&args[2]));
            return Ok(Flow::Continue);
        };
        let upstream = self.ctx.upstream_full();
        let target = match self.ctx.users.credential(&upstream, g).await {
            Ok(c) => c,
            Err(e) => {
                self.local(Bytes::from_static(e.upstream().reply()));
                return Ok(Flow::Continue);
            }
        };
        if self.in_multi && target.names_user {
            // Answered at EXEC, inside its array, where turnstile cannot put the
            // user's name back in place of its upstream user's: refused as a rule
            // without DRYRUN would be (Redis 7.0 names no one and is forwarded).
            self.local(cred.noperm("acl|dryrun", self.shown_name()));
            return Ok(Flow::Continue);
        }
        let mut rewritten = args.to_vec();
        rewritten[2] = target.name.as_bytes().to_vec();
        if self.in_multi {
            return self.forward_rewritten(&rewritten).await;
        }
        // Redis 7.2+ names the user it checked: the client sees the one it asked about.
        let silent = match self.expectation(Command::Other, rewritten.len()) {
            Entry::Replies { silent, .. } => silent,
            _ => false,
        };
        let to: Arc<str> = Arc::from(String::from_utf8_lossy(&args[2]).as_ref());
        if !self.refresh_grant() {
            self.push(Entry::Close);
            return Ok(Flow::Stop);
        }
        let refs: Vec<&[u8]> = rewritten.iter().map(Vec::as_slice).collect();
        let bytes = encode::command(&refs);
        let entry = Entry::Rewrite { from: Arc::clone(&target.name), to, silent };
        Ok(if self.forward_own(entry, &bytes).await? { Flow::Continue } else { Flow::Stop })
    }

    /// An authenticated HELLO with a valid name. Without SETNAME, on lanes, it picks
    /// the lane of the protocol it asks for and is answered there, by Redis; else
    /// it goes to the client's own connection.
    async fn hello(&mut self, h: hello::Hello) -> std::io::Result<Flow> {
        let request = h.upstream_command();
        if let Some(name) = &h.setname {
            self.slot.set_name(name);
        }
        if let Some(v) = h.version {
            self.proto3 = v == 3;
        }
        if h.setname.is_none() && !matches!(self.conn, Conn::Own(_)) && self.reply_mode == ReplyMode::On {
            if !self.refresh_grant() {
                self.push(Entry::Close);
                return Ok(Flow::Stop);
            }
            // `route` moves the client to a lane of that protocol.
            let before = self.resp3;
            self.resp3 = h.version.map_or(self.resp3, |v| v == 3);
            match self.route().await {
                super::route::Route::Lane => {
                    self.shared_unplanned += 1;
                    self.send_shared(request, 1).await?;
                    return Ok(Flow::Continue);
                }
                super::route::Route::Failed => return Ok(Flow::Stop),
                super::route::Route::Refused(e) => {
                    self.resp3 = before;
                    self.local(Bytes::from_static(e.reply()));
                    return Ok(Flow::Continue);
                }
                // This HELLO itself sets the protocol of the client's own connection.
                super::route::Route::Own => self.resp3 = before,
            }
        }
        // CLIENT REPLY OFF|SKIP silences a HELLO's map like any other reply (the
        // relay still reads it, to learn the protocol).
        let silent = self.silenced();
        let entry = Entry::Replies { n: 1, tag: Tag::Hello, silent };
        Ok(if self.forward_own(entry, &request).await? { Flow::Continue } else { Flow::Stop })
    }

    /// Verifies credentials; on success the connection takes that identity (and
    /// its rights on this database), on failure it keeps the one it had.
    async fn login(&mut self, user: Option<&[u8]>, password: &[u8]) -> bool {
        let attempt = Attempt { bdb: self.ctx.uid, peer: self.slot.peer().map(|a| a.ip()), user, password };
        let slot = Arc::clone(&self.slot);
        let generation = self.ctx.directory.generation();
        let found = self
            .ctx
            .directory
            .login(attempt, &self.ctx.stats, self.identity.as_ref(), |id| slot.set_identity(id))
            .await;
        let Some(id) = found else { return false };
        let Some(grant) = self.ctx.directory.grant(self.ctx.uid, &id) else {
            // Its rights went away during the check.
            self.slot.set_identity(self.identity.clone());
            return false;
        };
        self.generation = generation;
        self.grant = Some(grant);
        self.in_use = Some(crate::auth::InUse::new(Arc::clone(&id.usage)));
        self.identity = Some(id);
        self.shown_changed().await;
        true
    }
}
