//! `redis_acl` rule strings: split into ACL SETUSER arguments and checked before
//! they are stored. A rule describes what a user may do, never who it is: password
//! and state modifiers are refused (Redis Enterprise refuses them too), and so is
//! any token Redis's ACL grammar does not have. Whether the commands and categories
//! named exist is left to the upstream, which refuses the whole rule atomically.

/// Longest rule accepted (Redis has no limit; a rule is a short list of grants).
pub const MAX_RULE: usize = 16 * 1024;

/// Why a rule was refused. `token` is safe to show: for a password token only its
/// modifier is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}: {token}")]
pub struct RuleError {
    pub token: String,
    pub why: &'static str,
}

/// The rule's tokens: whitespace-separated, a `( … )` selector being one token.
/// Unbalanced parentheses leave the rest as one token (refused by [`validate`]).
pub fn tokens(rule: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = rule.trim_start();
    while !rest.is_empty() {
        let end = if rest.starts_with('(') {
            rest.find(')').map_or(rest.len(), |i| i + 1)
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        out.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    out
}

/// Checks a rule string. See the module documentation.
pub fn validate(rule: &str) -> Result<(), RuleError> {
    if rule.len() > MAX_RULE {
        return Err(RuleError { token: format!("{} bytes", rule.len()), why: "the rule is too long" });
    }
    if rule.bytes().any(|b| b == 0 || (b.is_ascii_control() && !b.is_ascii_whitespace())) {
        return Err(RuleError {
            token: "a control character".into(),
            why: "the rule has a control character",
        });
    }
    for t in tokens(rule) {
        if let Some(inner) = t.strip_prefix('(') {
            let Some(inner) = inner.strip_suffix(')') else {
                return Err(RuleError { token: shown(t), why: "unbalanced parentheses in a selector" });
            };
            for s in tokens(inner) {
                if s.starts_with('(') {
                    return Err(RuleError { token: shown(s), why: "selectors cannot be nested" });
                }
                selector_token(s)?;
            }
            continue;
        }
        if t.contains(')') {
            return Err(RuleError { token: shown(t), why: "unbalanced parentheses in a selector" });
        }
        let lower = t.to_ascii_lowercase();
        if matches!(lower.as_str(), "sanitize-payload" | "skip-sanitize-payload" | "clearselectors") {
            continue;
        }
        selector_token(t)?;
    }
    Ok(())
}

/// A token that may appear at the root of a rule or inside a selector.
fn selector_token(t: &str) -> Result<(), RuleError> {
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        "allkeys" | "resetkeys" | "allchannels" | "resetchannels" | "allcommands" | "nocommands" => {
            return Ok(());
        }
        "on" | "off" => {
            return Err(RuleError { token: t.into(), why: "a rule cannot switch the user on or off" });
        }
        "nopass" | "resetpass" => {
            return Err(RuleError { token: t.into(), why: "a rule cannot set passwords" });
        }
        "reset" => return Err(RuleError { token: t.into(), why: "a rule cannot reset the user" }),
        _ => {}
    }
    let b = t.as_bytes();
    match b[0] {
        b'>' | b'<' | b'#' | b'!' => Err(RuleError {
            // Never the rest: it is a password or a hash.
            token: format!("'{}…'", b[0] as char),
            why: "a rule cannot set passwords",
        }),
        b'~' | b'&' => Ok(()),
        b'%' => {
            let perms = lower.strip_prefix('%').and_then(|r| r.split_once('~')).map(|(p, _)| p);
            match perms {
                Some(p) if !p.is_empty() && p.bytes().all(|c| c == b'r' || c == b'w') => Ok(()),
                _ => Err(RuleError { token: shown(t), why: "unknown key permission" }),
            }
        }
        b'+' | b'-' if b.len() > 1 && !b[1..].iter().any(|c| c.is_ascii_whitespace()) => Ok(()),
        _ => Err(RuleError { token: shown(t), why: "unknown ACL rule token" }),
    }
}

/// A token as shown in an error: bounded, and quoted.
fn shown(t: &str) -> String {
    let mut s: String = t.chars().take(64).collect();
    if s.len() < t.len() {
        s.push('…');
    }
    format!("'{s}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_selectors_whole() {
        assert_eq!(tokens("  +@read ~a:*  (+set ~b:*)  %R~c "), ["+@read", "~a:*", "(+set ~b:*)", "%R~c"]);
        assert_eq!(tokens(""), Vec::<&str>::new());
    }

    #[test]
    fn accepts_rules() {
        for r in [
            "+@all ~*",
            "+@read ~cache:* -keys",
            "~* &news:* +@all -@dangerous",
            "%R~ro:* %W~wo:* %RW~rw:* +get +set",
            "+get ~a:* (+set ~b:*) (+del ~c:*)",
            "allkeys allchannels allcommands sanitize-payload",
            "resetchannels +client|setname +@pubsub &*",
            "",
        ] {
            assert_eq!(validate(r), Ok(()), "{r}");
        }
    }

    #[test]
    fn refuses_identity_and_unknown_tokens_without_echoing_secrets() {
        for (r, token) in [
            ("+@all >hunter2", "'>…'"),
            ("<old +@all", "'<…'"),
            ("#5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", "'#…'"),
            ("!abc", "'!…'"),
            ("+@all nopass", "nopass"),
            ("resetpass ~*", "resetpass"),
            ("reset +@all", "reset"),
            ("on +@all", "on"),
            ("+@all OFF", "OFF"),
            ("+@all bogus", "'bogus'"),
            ("(+get ~a (+set))", "'(+set'"),
            ("(+get ~a", "'(+get ~a'"),
            ("%X~a", "'%X~a'"),
            ("(+get >pw)", "'>…'"),
        ] {
            let e = validate(r).expect_err(r);
            assert_eq!(e.token, token, "{r}");
            assert!(!e.to_string().contains("hunter2") && !e.to_string().contains("5e88"));
        }
    }
}
