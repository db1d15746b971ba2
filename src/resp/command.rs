//! Which commands turnstile must look at, recognised from their first arguments.

/// The three pub/sub families; each counts its subscriptions separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    Channel,
    Pattern,
    Shard,
}

/// A request as far as the proxy cares. Everything `Other` is forwarded untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Auth,
    Hello,
    AclWhoami,
    /// `ACL USERS`, `ACL LIST`, `ACL GETUSER`, `ACL DRYRUN`: answered (or, for
    /// DRYRUN, rewritten) by turnstile about its own users of the database, so the
    /// upstream's users, hashes and turnstile's internal names are never shown.
    AclUsers,
    AclList,
    AclGetuser,
    AclDryrun,
    /// `CONFIG GET`: forwarded with its patterns narrowed to non-secret parameters.
    ConfigGet,
    /// `CLIENT INFO`: forwarded, its `user=` field shown as the client's own name.
    ClientInfo,
    Quit,
    Reset,
    Subscribe(SubKind),
    Unsubscribe(SubKind),
    Monitor,
    ClientReply,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER`: what client library is speaking. Only
    /// shown by `CLIENT LIST`, so it may go on a shared connection.
    ClientSetinfo,
    /// `CLIENT MAINT_NOTIFICATIONS`: the server would push where to reconnect during
    /// maintenance. The endpoint clients know is turnstile, not the upstream, so
    /// turnstile declines it as a server without the feature does.
    ClientMaintNotifications,
    /// Only special before authentication (its NOAUTH is an EXECABORT); ends a
    /// transaction, like DISCARD.
    Exec,
    Discard,
    /// Starts a transaction: until EXEC or DISCARD, Redis queues what it gets.
    Multi,
    /// SYNC / PSYNC: the reply is a replication stream turnstile does not follow.
    Replication,
    /// A command that can block the client (BLPOP, BZPOPMIN, XREAD, WAIT…): Redis
    /// answers it `-UNBLOCKED` when its node is demoted under it, and so does
    /// turnstile when a failover retires the node.
    Blocking,
    /// A common data command that leaves nothing behind on the connection (no
    /// database selected, no transaction, subscription, name or mode): a connection
    /// that only ever sent these can serve the next client without a `RESET`.
    Stateless,
    /// A name, or an `ACL`/`CLIENT`/`CONFIG` subcommand, with a NUL byte in it.
    /// Redis finds commands in hash tables that hash the whole name but compare
    /// keys as C strings (`strcasecmp`, which stops at the NUL): `GET\0<n>` is
    /// `CONFIG`'s `GET` whenever the whole name happens to hash into its slot,
    /// about one try in eight for a small table. Forwarded, such a request would
    /// be whatever turnstile answers or rewrites itself (`CONFIG GET requirepass`,
    /// `AUTH` with the service credential, `ACL LIST`), so it never is: turnstile
    /// answers it as Redis answers a name it does not find.
    Ambiguous,
    Other,
}

/// Longest command name turnstile recognises; a longer first argument is `Other`
/// without looking at it, which lets a huge first argument stream through.
pub const MAX_NAME: usize = 16;

/// Classifies a request from its name and, for `ACL`/`CLIENT`/`CONFIG`, its
/// subcommand. `sub` is `None` when the request has no second argument (or it is
/// still arriving).
pub fn classify(name: &[u8], sub: Option<&[u8]>) -> Command {
    if name.len() > MAX_NAME {
        return if name.contains(&0) { with_nul(name) } else { Command::Other };
    }
    // Lowercased and checked for a NUL in one pass: a call to `memchr` and one to
    // `memcpy` cost more than the loop over a name this short.
    let mut lower = [0u8; MAX_NAME];
    let lower = &mut lower[..name.len()];
    let mut nul = false;
    for (l, &c) in lower.iter_mut().zip(name) {
        *l = c.to_ascii_lowercase();
        nul |= c == 0;
    }
    if nul {
        return with_nul(name);
    }
    let is_sub = |s: &[u8]| sub.is_some_and(|x| x.eq_ignore_ascii_case(s));
    match &*lower {
        b"acl" | b"client" | b"config" if sub.is_some_and(|s| s.contains(&0)) => Command::Ambiguous,
        b"auth" => Command::Auth,
        b"hello" => Command::Hello,
        b"quit" => Command::Quit,
        b"reset" => Command::Reset,
        b"acl" if is_sub(b"whoami") => Command::AclWhoami,
        b"acl" if is_sub(b"users") => Command::AclUsers,
        b"acl" if is_sub(b"list") => Command::AclList,
        b"acl" if is_sub(b"getuser") => Command::AclGetuser,
        b"acl" if is_sub(b"dryrun") => Command::AclDryrun,
        b"config" if is_sub(b"get") => Command::ConfigGet,
        b"client" if is_sub(b"reply") => Command::ClientReply,
        b"client" if is_sub(b"setinfo") => Command::ClientSetinfo,
        b"client" if is_sub(b"info") => Command::ClientInfo,
        b"client" if is_sub(b"maint_notifications") => Command::ClientMaintNotifications,
        b"subscribe" => Command::Subscribe(SubKind::Channel),
        b"psubscribe" => Command::Subscribe(SubKind::Pattern),
        b"ssubscribe" => Command::Subscribe(SubKind::Shard),
        b"unsubscribe" => Command::Unsubscribe(SubKind::Channel),
        b"punsubscribe" => Command::Unsubscribe(SubKind::Pattern),
        b"sunsubscribe" => Command::Unsubscribe(SubKind::Shard),
        b"monitor" => Command::Monitor,
        b"exec" => Command::Exec,
        b"discard" => Command::Discard,
        b"multi" => Command::Multi,
        b"sync" | b"psync" => Command::Replication,
        b"blpop" | b"brpop" | b"brpoplpush" | b"blmove" | b"blmpop" | b"bzpopmin" | b"bzpopmax"
        | b"bzmpop" | b"xread" | b"xreadgroup" | b"wait" | b"waitaof" => Command::Blocking,
        // An allowlist, not a denylist: a command missing here merely costs a RESET.
        b"get" | b"set" | b"mget" | b"mset" | b"del" | b"unlink" | b"exists" | b"incr" | b"incrby"
        | b"decr" | b"decrby" | b"incrbyfloat" | b"append" | b"strlen" | b"getdel" | b"getex" | b"getset"
        | b"setex" | b"psetex" | b"setnx" | b"getrange" | b"setrange" | b"expire" | b"pexpire"
        | b"expireat" | b"persist" | b"ttl" | b"pttl" | b"type" | b"hget" | b"hset" | b"hmget" | b"hmset"
        | b"hgetall" | b"hdel" | b"hexists" | b"hincrby" | b"hlen" | b"hkeys" | b"hvals" | b"lpush"
        | b"rpush" | b"lpop" | b"rpop" | b"llen" | b"lrange" | b"lindex" | b"ltrim" | b"sadd" | b"srem"
        | b"smembers" | b"sismember" | b"scard" | b"spop" | b"zadd" | b"zrem" | b"zrange" | b"zscore"
        | b"zcard" | b"zincrby" | b"zrank" | b"zrevrange" | b"zrangebyscore" | b"xadd" | b"xlen"
        | b"xrange" | b"ping" | b"echo" | b"time" | b"dbsize" => Command::Stateless,
        _ => Command::Other,
    }
}

/// A name with a NUL: Redis 7.0 tells QUIT apart with `strcasecmp` before any
/// lookup, so a `QUIT\0…` always quits there; any other such name is ambiguous.
fn with_nul(name: &[u8]) -> Command {
    if c_str(name).eq_ignore_ascii_case(b"quit") { Command::Quit } else { Command::Ambiguous }
}

/// True for the first arguments Redis takes for an HTTP request (`POST`, `Host:`)
/// and answers by closing the connection (its defence against cross-protocol
/// scripting, checked in `processCommand` before anything else). Redis compares
/// with `strcasecmp`, so the name counts up to its first NUL byte.
pub fn is_cross_protocol(name: &[u8]) -> bool {
    // Most names are ruled out by their first byte.
    if !matches!(name.first(), Some(b'p' | b'P' | b'h' | b'H')) {
        return false;
    }
    let name = c_str(name);
    name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:")
}

/// An argument as Redis reads it where it compares it as a C string (`strcasecmp`
/// on HELLO's options, CLIENT REPLY's modes, `%s` in its error texts): up to its
/// first NUL byte.
pub fn c_str(arg: &[u8]) -> &[u8] {
    arg.iter().position(|&b| b == 0).map_or(arg, |i| &arg[..i])
}

/// True when classifying this request needs its second argument too.
pub fn needs_subcommand(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"acl")
        || name.eq_ignore_ascii_case(b"client")
        || name.eq_ignore_ascii_case(b"config")
}

/// True for commands turnstile answers itself and therefore must see whole.
pub fn must_be_whole(cmd: Command) -> bool {
    matches!(
        cmd,
        Command::Auth
            | Command::Hello
            | Command::AclWhoami
            | Command::AclUsers
            | Command::AclList
            | Command::AclGetuser
            | Command::AclDryrun
            | Command::ConfigGet
            | Command::ClientInfo
            | Command::ClientReply
            | Command::ClientMaintNotifications
            | Command::Ambiguous
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_case_insensitively() {
        assert_eq!(classify(b"aUtH", None), Command::Auth);
        assert_eq!(classify(b"ACL", Some(b"whoami")), Command::AclWhoami);
        assert_eq!(classify(b"acl", Some(b"list")), Command::AclList);
        assert_eq!(classify(b"acl", Some(b"cat")), Command::Other);
        assert_eq!(classify(b"Config", Some(b"GET")), Command::ConfigGet);
        assert_eq!(classify(b"config", Some(b"set")), Command::Other);
        assert_eq!(classify(b"acl", None), Command::Other);
        assert_eq!(classify(b"PSUBSCRIBE", None), Command::Subscribe(SubKind::Pattern));
        assert_eq!(classify(&[b'a'; 100], None), Command::Other);
        assert_eq!(classify(b"GET", None), Command::Stateless);
        assert_eq!(classify(b"select", None), Command::Other);
        assert_eq!(classify(b"BLpop", None), Command::Blocking);
        assert_eq!(classify(b"client", Some(b"setname")), Command::Other);
        assert_eq!(classify(b"CLIENT", Some(b"SetInfo")), Command::ClientSetinfo);
        assert_eq!(classify(b"client", Some(b"MAINT_NOTIFICATIONS")), Command::ClientMaintNotifications);
    }

    /// A NUL anywhere in a name (even past the longest name turnstile knows), or in
    /// the subcommand of the containers turnstile looks into, is never forwarded.
    #[test]
    fn names_with_a_nul_are_ambiguous() {
        assert_eq!(classify(b"GET\x0017", None), Command::Ambiguous);
        assert_eq!(classify(b"AUTH\x00", Some(b"default")), Command::Ambiguous);
        assert_eq!(classify(b"\x00", None), Command::Ambiguous);
        let mut long = b"config".to_vec();
        long.extend([b'x'; 40]);
        long.push(0);
        assert_eq!(classify(&long, None), Command::Ambiguous);
        assert_eq!(classify(b"CONFIG", Some(b"GET\x00x")), Command::Ambiguous);
        assert_eq!(classify(b"acl", Some(b"\x00list")), Command::Ambiguous);
        assert_eq!(classify(b"client", Some(b"info\x00")), Command::Ambiguous);
        // Only those three containers: others' subcommands are not turnstile's.
        assert_eq!(classify(b"object", Some(b"encoding\x00")), Command::Other);
        assert_eq!(classify(b"GET", Some(b"k\x00")), Command::Stateless);
        assert_eq!(classify(b"quit\x00x", None), Command::Quit);
        assert!(must_be_whole(Command::Ambiguous));
        assert_eq!(c_str(b"off\x00x"), b"off");
        assert_eq!(c_str(b"off"), b"off");
    }

    #[test]
    fn cross_protocol_names_as_strcasecmp_sees_them() {
        for name in [&b"POST"[..], b"post", b"Host:", b"HOST:", b"post\0x", b"host:\0"] {
            assert!(is_cross_protocol(name), "{name:?}");
        }
        for name in [&b"POSTS"[..], b"host", b"Host: x", b"PING", b"", b"\0post"] {
            assert!(!is_cross_protocol(name), "{name:?}");
        }
    }
}
