//! Redis Enterprise's password complexity rules (applied when the cluster turns
//! them on, to every password set or added, for users and databases alike).

use super::error::{Error, Result};
use crate::store::state::ClusterSettings;

/// Checks `password` against the cluster's rules. `email` is the user's, if any.
/// Errors describe the rule broken, never the password.
pub fn check(settings: &ClusterSettings, password: &str, email: Option<&str>) -> Result<()> {
    let fail = |why: &str| Err(Error::bad_request("password_not_complex", why.to_string()));
    if password.is_empty() {
        return Err(Error::bad_request("invalid_password", "the password is empty"));
    }
    if !settings.password_complexity {
        return Ok(());
    }
    if password.chars().count() < settings.password_min_length as usize {
        return fail(&format!(
            "the password must be at least {} characters long",
            settings.password_min_length
        ));
    }
    let has = |f: fn(&char) -> bool| password.chars().any(|c| f(&c));
    if !has(char::is_ascii_uppercase) {
        return fail("the password must contain an upper-case letter");
    }
    if !has(char::is_ascii_lowercase) {
        return fail("the password must contain a lower-case letter");
    }
    if !has(char::is_ascii_digit) {
        return fail("the password must contain a digit");
    }
    if !password.chars().any(|c| !c.is_alphanumeric()) {
        return fail("the password must contain a special character");
    }
    if let Some(email) = email.filter(|e| !e.is_empty()) {
        let lower = password.to_lowercase();
        let email = email.to_lowercase();
        let reversed: String = email.chars().rev().collect();
        if lower.contains(&email) || lower.contains(&reversed) {
            return fail("the password must not contain the user's email address, forwards or backwards");
        }
    }
    let chars: Vec<char> = password.chars().collect();
    if chars.windows(4).any(|w| w.iter().all(|&c| c == w[0])) {
        return fail("the password must not repeat a character more than three times in a row");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> ClusterSettings {
        ClusterSettings { password_complexity: true, ..ClusterSettings::default() }
    }

    #[test]
    fn rules() {
        let s = on();
        assert!(check(&s, "Str0ng!pass", None).is_ok());
        for weak in ["Sh0rt!", "nouppercase1!", "NOLOWERCASE1!", "NoDigits!!x", "NoSpecial123", "Aaaaa1!xyz"]
        {
            let e = check(&s, weak, None).unwrap_err();
            assert_eq!(e.code, "password_not_complex", "{weak}");
            assert!(!e.description.contains(weak));
        }
        assert!(check(&s, "X1!bob@example.com", Some("bob@example.com")).is_err());
        assert!(check(&s, "X1!moc.elpmaxe@bob", Some("bob@example.com")).is_err());
        assert!(check(&s, "Aaa1!aaa", None).is_ok(), "three in a row is allowed");
        let mut long = on();
        long.password_min_length = 12;
        assert!(check(&long, "Str0ng!pass", None).is_err());
        assert!(check(&ClusterSettings::default(), "weak", None).is_ok(), "off by default");
        assert_eq!(check(&ClusterSettings::default(), "", None).unwrap_err().code, "invalid_password");
    }
}
