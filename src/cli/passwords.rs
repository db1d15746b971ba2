//! `turnstile passwords <bdb|user> <uid> list|add|delete`: the rotation endpoints
//! without writing curl bodies. `add` makes a strong password and prints it once.

use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::http::{Client, HttpError};

/// Whose passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Owner {
    /// A database's default user (`/v1/bdbs/{uid}/passwords`).
    Bdb,
    /// A user (`/v1/users/{uid}/passwords`, changed through `/v1/users/password`).
    User,
}

/// What to do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Show every password: id, label, when added and by whom, last use, open
    /// connections and their clients, scheduled expiry. Never a password.
    List {
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a generated strong password, printed once (store it now).
    Add {
        /// A name for it, shown by `list`.
        #[arg(long)]
        label: Option<String>,
        /// Remove every other password of the set after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        expire_old_after: Option<u64>,
    },
    /// Delete a password by its id (from `list`).
    Delete {
        #[arg(long)]
        id: String,
        /// Refuse if it has open connections or authenticated one this recently.
        #[arg(long, value_name = "SECONDS")]
        unless_used_within: Option<u64>,
    },
}

/// Why the command failed (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{0}")]
    Refused(String),
}

/// Generated passwords: this many characters from a 72-symbol alphabet (~370 bits),
/// with every class RS's complexity rules ask for.
const GENERATED_LEN: usize = 60;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~!#%+=";

/// A random password that passes the complexity rules (upper, lower, digit, other).
pub fn generate() -> Zeroizing<String> {
    loop {
        let mut bytes = Zeroizing::new([0u8; GENERATED_LEN * 2]);
        getrandom::fill(bytes.as_mut()).expect("the OS random number generator is unavailable");
        // Rejection sampling: no bias toward the first symbols.
        let limit = 256 - 256 % ALPHABET.len();
        let pw: Zeroizing<String> = Zeroizing::new(
            bytes
                .iter()
                .filter(|b| usize::from(**b) < limit)
                .take(GENERATED_LEN)
                .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
                .collect(),
        );
        let has = |f: fn(&char) -> bool| pw.chars().any(|c| f(&c));
        if pw.len() == GENERATED_LEN
            && has(char::is_ascii_uppercase)
            && has(char::is_ascii_lowercase)
            && has(char::is_ascii_digit)
            && pw.chars().any(|c| !c.is_ascii_alphanumeric())
        {
            return pw;
        }
    }
}

/// Runs one action; what it prints goes to `out`.
pub async fn run(
    client: &Client,
    owner: Owner,
    uid: u32,
    action: Action,
    out: &mut String,
) -> Result<(), CliError> {
    let list_path = match owner {
        Owner::Bdb => format!("/v1/bdbs/{uid}/passwords"),
        Owner::User => format!("/v1/users/{uid}/passwords"),
    };
    match action {
        Action::List { json } => {
            let v = expect_ok(client.call("GET", &list_path, None).await?)?;
            if json {
                out.push_str(&serde_json::to_string_pretty(&v).unwrap_or_default());
                out.push('\n');
            } else {
                out.push_str(&table(&v));
            }
        }
        Action::Add { label, expire_old_after } => {
            let before = ids(&expect_ok(client.call("GET", &list_path, None).await?)?);
            let password = generate();
            let (path, mut body) = change_target(client, owner, uid, "new_password", &password).await?;
            if let Some(l) = &label {
                body["label"] = json!(l);
            }
            if let Some(s) = expire_old_after {
                body["expire_old_after"] = json!(s);
            }
            // Printed whatever happens next: once the POST is in, the password is in
            // the set, and it must never be lost (least of all with expire_old_after).
            // A POST that fails without an answer may have been applied as well.
            let posted = client.call("POST", &path, Some(&body)).await;
            let unknown = match &posted {
                Ok((status, _)) => *status >= 500,
                Err(_) => true,
            };
            if unknown {
                eprintln!("password (the outcome is unknown: it may be in the set): {}", *password);
            }
            expect_ok(posted?)?;
            println!("password: {}", *password);
            let after = ids(&expect_ok(client.call("GET", &list_path, None).await?)?);
            let id = after.into_iter().find(|i| !before.contains(i)).unwrap_or_default();
            out.push_str(&format!("id: {id}\n"));
            out.push_str("# The password is shown this once: store it in your secret manager now.\n");
            if let Some(s) = expire_old_after {
                out.push_str(&format!("# Every other password of the set is removed in {s} s.\n"));
            }
        }
        Action::Delete { id, unless_used_within } => {
            let (path, mut body) = match owner {
                Owner::Bdb => (format!("/v1/bdbs/{uid}/passwords"), json!({})),
                Owner::User => {
                    ("/v1/users/password".to_string(), json!({"username": user_name(client, uid).await?}))
                }
            };
            body["id"] = json!(id);
            if let Some(s) = unless_used_within {
                body["unless_used_within"] = json!(s);
            }
            let (status, v) = client.call("DELETE", &path, Some(&body)).await?;
            if status == 409 {
                let mut msg = describe(&v);
                if let Some(usage) = v.get("usage") {
                    msg.push('\n');
                    msg.push_str(&table(&json!({"passwords": usage})));
                }
                return Err(CliError::Refused(msg));
            }
            expect_ok((status, v))?;
            out.push_str(&format!("deleted {id}\n"));
        }
    }
    Ok(())
}

/// Where a POST goes and the body naming the password.
async fn change_target(
    client: &Client,
    owner: Owner,
    uid: u32,
    user_field: &str,
    password: &str,
) -> Result<(String, Value), CliError> {
    Ok(match owner {
        Owner::Bdb => (format!("/v1/bdbs/{uid}/passwords"), json!({"password": password})),
        Owner::User => {
            let name = user_name(client, uid).await?;
            ("/v1/users/password".to_string(), json!({"username": name, user_field: password}))
        }
    })
}

async fn user_name(client: &Client, uid: u32) -> Result<String, CliError> {
    let v = expect_ok(client.call("GET", &format!("/v1/users/{uid}"), None).await?)?;
    v["name"].as_str().map(str::to_string).ok_or_else(|| CliError::Refused("the user has no name".into()))
}

fn expect_ok((status, v): (u16, Value)) -> Result<Value, CliError> {
    if (200..300).contains(&status) {
        Ok(v)
    } else {
        Err(CliError::Refused(format!("{status}: {}", describe(&v))))
    }
}

fn describe(v: &Value) -> String {
    match (v["error_code"].as_str(), v["description"].as_str()) {
        (Some(c), Some(d)) => format!("{c}: {d}"),
        _ => v.to_string(),
    }
}

fn ids(v: &Value) -> Vec<String> {
    v["passwords"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect()
}

/// The GET as a table, one line per password, then the clients indented.
fn table(v: &Value) -> String {
    let s = |e: &Value, k: &str| e[k].as_str().unwrap_or("-").to_string();
    let mut out = format!(
        "{:<20} {:<20} {:<20} {:<12} {:<20} {:>5}  {}\n",
        "ID", "LABEL", "CREATED", "CREATOR", "LAST USED", "CONNS", "EXPIRES"
    );
    for e in v["passwords"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<20} {:<20} {:<20} {:<12} {:<20} {:>5}  {}\n",
            s(e, "id"),
            s(e, "label"),
            s(e, "created"),
            s(e, "creator"),
            e["last_used"].as_str().unwrap_or("never"),
            e["connections"].as_u64().unwrap_or(0),
            s(e, "expires"),
        ));
        for c in e["clients"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    client {} name={} lib={}\n",
                s(c, "address"),
                s(c, "name"),
                s(c, "lib_name")
            ));
        }
    }
    if let Some(x) = v.get("expiry").filter(|x| !x.is_null()) {
        out.push_str(&format!(
            "expiry at {}: keeps {}, removes {}\n",
            s(x, "at"),
            s(x, "keep"),
            x["remove"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_varied_and_different() {
        let (a, b) = (generate(), generate());
        assert_ne!(*a, *b);
        assert_eq!(a.len(), GENERATED_LEN);
        let settings =
            crate::store::state::ClusterSettings { password_complexity: true, ..Default::default() };
        assert!(crate::control::complexity::check(&settings, &a, None).is_ok());
    }
}
