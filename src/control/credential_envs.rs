//! `[admin.credential_envs]`: the environment variables a database created through
//! the API may take its upstream secrets from, and the only upstream addresses each
//! variable's value may be sent to.
//!
//! Why: an API user who may create databases chooses their upstream, so a variable
//! named freely would be sent in `AUTH` to whatever server that user runs. A secret
//! from turnstile's environment therefore only ever goes where the operator said,
//! in the config file. Config-file databases are the operator's own and are not
//! checked here.

use std::collections::{BTreeMap, HashMap};

use crate::proxy::upstream::check_hostport;

/// The operator's allowance: variable name → the addresses its value may go to.
/// Empty (the default): API-created databases use no environment secret at all.
#[derive(Debug, Clone, Default)]
pub struct CredentialEnvs {
    allowed: HashMap<String, Vec<Address>>,
}

/// A `host:port` as compared: the host in lower case (names are case-insensitive),
/// the port as a number. Nothing is resolved: the upstream URL must name the host
/// as the operator wrote it, so a DNS name cannot be swapped for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    host: String,
    port: u16,
}

impl Address {
    fn parse(s: &str) -> Result<Self, String> {
        check_hostport(s)?;
        let (host, port) = s.rsplit_once(':').ok_or("a port is required (host:port)")?;
        let port = port.parse().map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?;
        Ok(Self { host: host.to_ascii_lowercase(), port })
    }
}

/// A variable the operator may not list: its name and what turnstile uses it for.
pub struct Reserved<'a> {
    pub var: &'a str,
    pub what: String,
}

impl CredentialEnvs {
    /// Builds the allowance from the config table. A variable in `reserved` (one of
    /// turnstile's own secrets) is refused whatever addresses it lists, as are
    /// `TURNSTILE_ADMIN_PASSWORD` always, an empty list and a malformed address.
    /// The error is (the variable, why), never a value.
    pub fn new(
        table: &BTreeMap<String, Vec<String>>,
        reserved: &[Reserved],
    ) -> Result<Self, (String, String)> {
        let admin = Reserved {
            var: crate::effective::ADMIN_PASSWORD_ENV,
            what: "the bootstrap admin's password".into(),
        };
        let mut allowed = HashMap::new();
        for (var, addrs) in table {
            if var.is_empty() || var.contains(['=', '\0']) {
                return Err((var.clone(), "is not a valid environment variable name".into()));
            }
            if let Some(r) = std::iter::once(&admin).chain(reserved).find(|r| r.var == var) {
                return Err((var.clone(), format!("holds {}, which is never sent to an upstream", r.what)));
            }
            if addrs.is_empty() {
                return Err((var.clone(), "lists no address (host:port) its secret may be sent to".into()));
            }
            let parsed = addrs
                .iter()
                .map(|a| Address::parse(a).map_err(|why| (var.clone(), format!("{a:?}: {why}"))))
                .collect::<Result<Vec<_>, _>>()?;
            allowed.insert(var.clone(), parsed);
        }
        Ok(Self { allowed })
    }

    /// Whether the value of `var` may be sent to every one of `addresses` (a fixed
    /// upstream's one, or a Sentinel URL's Sentinels). Called before the variable
    /// is read, so that a refusal is the same whether it is set or not. The error
    /// names the variable and the address, never the value.
    pub fn check(&self, var: &str, addresses: &[&str]) -> Result<(), String> {
        let Some(allowed) = self.allowed.get(var) else {
            return Err(format!(
                "environment variable {var} is not in admin.credential_envs; a database created \
                 through the API may only use the variables the operator allowed there"
            ));
        };
        for a in addresses {
            // An address that does not parse matches nothing (the URL was checked
            // before; this is only the safe answer).
            if !Address::parse(a).is_ok_and(|a| allowed.contains(&a)) {
                return Err(format!(
                    "environment variable {var} may not be sent to {a}: admin.credential_envs does not \
                     list that address for it"
                ));
            }
        }
        Ok(())
    }

    /// The variables allowed (for `check-config`).
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.allowed.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        entries.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    }

    fn envs(entries: &[(&str, &[&str])]) -> CredentialEnvs {
        CredentialEnvs::new(&table(entries), &[]).unwrap()
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let e = CredentialEnvs::default().check("ANY", &["127.0.0.1:6379"]).unwrap_err();
        assert!(e.contains("ANY") && e.contains("admin.credential_envs"), "{e}");
    }

    #[test]
    fn a_listed_variable_goes_only_to_its_addresses() {
        let e = envs(&[("B_PW", &["10.0.0.7:6379", "Redis.Example:6380"])]);
        assert_eq!(e.check("B_PW", &["10.0.0.7:6379"]), Ok(()));
        assert_eq!(e.check("B_PW", &["redis.example:6380"]), Ok(()), "the host's case does not matter");
        assert_eq!(e.check("B_PW", &["REDIS.EXAMPLE:6380"]), Ok(()));
        let other = e.check("B_PW", &["10.0.0.8:6379"]).unwrap_err();
        assert!(other.contains("B_PW") && other.contains("10.0.0.8:6379"), "{other}");
        assert!(e.check("B_PW", &["10.0.0.7:6380"]).is_err(), "another port");
        assert!(e.check("B_PW", &["redis.example.:6380"]).is_err(), "compared as written, not resolved");
        assert!(e.check("b_pw", &["10.0.0.7:6379"]).is_err(), "variable names are case-sensitive");
        assert!(e.check("OTHER", &["10.0.0.7:6379"]).is_err());
    }

    #[test]
    fn every_sentinel_must_be_listed() {
        let e = envs(&[("S_PW", &["10.0.0.1:26379", "10.0.0.2:26379"])]);
        assert_eq!(e.check("S_PW", &["10.0.0.1:26379", "10.0.0.2:26379"]), Ok(()));
        assert_eq!(e.check("S_PW", &["10.0.0.2:26379"]), Ok(()), "a subset is fine");
        let e = e.check("S_PW", &["10.0.0.1:26379", "10.6.6.6:26379"]).unwrap_err();
        assert!(e.contains("10.6.6.6:26379"), "the address refused is named: {e}");
    }

    #[test]
    fn ipv6_addresses_compare_as_written() {
        let e = envs(&[("V6", &["[::1]:6379"])]);
        assert_eq!(e.check("V6", &["[::1]:6379"]), Ok(()));
        assert!(e.check("V6", &["[0::1]:6379"]).is_err());
    }

    #[test]
    fn turnstiles_own_secrets_cannot_be_listed() {
        let t = table(&[("TURNSTILE_ADMIN_PASSWORD", &["127.0.0.1:6379"])]);
        let (var, why) = CredentialEnvs::new(&t, &[]).unwrap_err();
        assert_eq!(var, "TURNSTILE_ADMIN_PASSWORD");
        assert!(why.contains("admin's password"), "{why}");
        let t = table(&[("STORE_PW", &["127.0.0.1:6379"])]);
        let reserved = [Reserved { var: "STORE_PW", what: "the store's password".into() }];
        let (var, why) = CredentialEnvs::new(&t, &reserved).unwrap_err();
        assert_eq!((var.as_str(), why.contains("store's password")), ("STORE_PW", true));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for (var, addrs) in [
            ("X", &[][..]),
            ("X", &["10.0.0.1"][..]),
            ("X", &["10.0.0.1:99999"][..]),
            ("X", &[":6379"][..]),
            ("", &["10.0.0.1:6379"][..]),
            ("A=B", &["10.0.0.1:6379"][..]),
        ] {
            assert!(CredentialEnvs::new(&table(&[(var, addrs)]), &[]).is_err(), "{var:?} {addrs:?}");
        }
    }
}
