//! What no rule can grant a database client, in one place: appended to the rules of
//! every upstream user turnstile makes (and inside each of their selectors, since
//! Redis allows a command that any selector allows), so Redis refuses these with
//! its own `-NOPERM` reply whatever the operator's rule says.
//!
//! Follows Redis Enterprise's command compatibility tables for database users:
//! server management, replication, persistence control, modules and ACL management
//! are out of reach. Beyond RS: `CLIENT LIST` describes turnstile's upstream
//! connections (shared by many clients, logged in under turnstile's own user names),
//! not the client's; `MONITOR` and `SLOWLOG` show every client's commands with their
//! arguments (other users' keys and values, and turnstile's own management commands
//! naming its upstream users). (`CLIENT INFO` is
//! answered with the client's own name in its `user=` field, see `proxy::local`.)
//! `CONFIG GET` is allowed only for non-secret parameters (see [`super::config_get`]);
//! `ACL WHOAMI/USERS/LIST/GETUSER/DRYRUN` are answered by turnstile about its own
//! users (see `proxy::acl`), so they never reach Redis as the client; they stay in
//! the upstream users' rules so that Redis can tell turnstile (`ACL DRYRUN`) whether
//! the client's rule grants them.

/// The least a database's service credential needs on the upstream: it only
/// manages turnstile's users.
pub const CONTROL_ACL: &str = "+acl|setuser +acl|deluser +acl|list +acl|getuser +acl|dryrun +ping";

/// ACL tokens, each removing a command or subcommand.
pub const FIXED_DENIALS: &[&str] = &[
    "-acl|setuser",
    "-acl|deluser",
    "-acl|load",
    "-acl|save",
    "-acl|log",
    "-acl|genpass",
    "-config|set",
    "-config|rewrite",
    "-config|resetstat",
    "-replicaof",
    "-slaveof",
    "-sync",
    "-psync",
    "-replconf",
    "-failover",
    "-module",
    "-debug",
    "-pfdebug",
    "-pfselftest",
    "-shutdown",
    "-save",
    "-bgsave",
    "-bgrewriteaof",
    "-migrate",
    "-client|kill",
    "-client|pause",
    "-client|unpause",
    "-client|no-evict",
    "-client|list",
    "-monitor",
    "-slowlog",
    "-swapdb",
];

/// The ACL SETUSER arguments (after the user name, password and state) that give
/// an upstream user exactly `rule` minus the fixed denials. `rule` has been
/// validated ([`super::rule::validate`]): it holds rule tokens and `( … )` selectors.
pub fn upstream_rules(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    for token in super::rule::tokens(rule) {
        match token.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            Some(inner) => {
                let mut s = String::with_capacity(token.len() + 512);
                s.push('(');
                s.push_str(inner.trim());
                for d in FIXED_DENIALS {
                    s.push(' ');
                    s.push_str(d);
                }
                s.push(')');
                out.push(s);
            }
            None => out.push(token.to_string()),
        }
    }
    out.extend(FIXED_DENIALS.iter().map(|d| d.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_follow_the_rule_and_enter_selectors() {
        let r = upstream_rules("+@read ~cache:* (+set ~w:*)");
        assert_eq!(&r[..2], ["+@read", "~cache:*"]);
        assert!(r[2].starts_with("(+set ~w:* -acl|setuser") && r[2].ends_with("-swapdb)"));
        assert_eq!(&r[3..], FIXED_DENIALS);
    }
}
