//! The effective configuration that `turnstile check-config` prints: the file as
//! turnstile understood it, every default filled in, and no secret in it.

use crate::config::{Config, Validated};

/// The variable holding the bootstrap admin's password (read by the binary).
pub const ADMIN_PASSWORD_ENV: &str = "TURNSTILE_ADMIN_PASSWORD";

/// Stands in for a password written inside an upstream URL.
const REDACTED: &str = "REDACTED";

/// Renders `v` as TOML that turnstile would load the same way (except for redacted
/// upstream passwords), preceded by comments listing the environment variables
/// secrets come from. `env_is_set` only says whether a variable is set: values are
/// never looked at here, so they cannot be printed by mistake.
pub fn render(v: &Validated, env_is_set: &dyn Fn(&str) -> bool) -> Result<String, toml::ser::Error> {
    let mut out = String::from(
        "# The effective configuration: every default filled in, secrets not printed.\n\
         # Secrets come from these environment variables (names only, never values):\n",
    );
    let mut env_line = |var: &str, role: &str| {
        let state = if env_is_set(var) { "set" } else { "NOT SET" };
        out.push_str(&format!("#   {var} ({role}): {state}\n"));
    };
    env_line(ADMIN_PASSWORD_ENV, "the bootstrap admin's password, needed while the store is empty");
    for (i, b) in v.config.bdbs.iter().enumerate() {
        if let Some(var) = &b.upstream_password_env {
            env_line(var, &format!("bdbs[{i}].upstream_password_env"));
        }
        if let Some(var) = &b.sentinel_password_env {
            env_line(var, &format!("bdbs[{i}].sentinel_password_env"));
        }
        if let Some(var) = &b.default_password_env {
            env_line(var, &format!("bdbs[{i}].default_password_env"));
        }
    }
    for var in v.config.admin.credential_envs.keys() {
        env_line(var, "admin.credential_envs, for databases created through the API");
    }
    if v.config.auth.verify_concurrency == 0 {
        out.push_str(&format!(
            "# auth.verify_concurrency = 0 means {} argon2 evaluation(s) at once on this machine.\n",
            v.verify.concurrency
        ));
    }
    if let Some(limit) = crate::descriptors::hard_limit() {
        let (a, p) = (&v.config.admin, &v.config.proxy);
        out.push_str(&format!(
            "# Open file limit at start: {limit} (the hard limit); so at most {} unauthenticated database\n\
             # connections and {} admin connections (half and a quarter of it).\n",
            crate::descriptors::cap(p.max_unauthenticated_connections, limit, 2),
            crate::descriptors::cap(a.max_connections, limit, 4),
        ));
    }
    out.push('\n');
    out.push_str(&toml::to_string_pretty(&redacted(v))?);
    Ok(out)
}

/// The configuration with any password written inside an upstream URL replaced.
/// The URL is rebuilt from its parsed parts, so nothing of the original password
/// (however it was encoded) survives.
fn redacted(v: &Validated) -> Config {
    let mut config = v.config.clone();
    for (b, parsed) in config.bdbs.iter_mut().zip(&v.bdbs) {
        let up = &parsed.upstream;
        let in_url = up.password.is_some() && b.upstream_password_env.is_none();
        b.upstream = up.display_with(in_url.then_some(REDACTED));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[admin]
listen = "127.0.0.1:9443"
[admin.credential_envs]
API_PW = ["10.0.0.3:6379", "10.0.0.4:6379"]
[store]
dir = "/var/lib/turnstile"
[[bdbs]]
uid = 1
name = "app"
listen = "127.0.0.1:12000"
upstream = "redis://svc:pa%40ss-in-url@10.0.0.1:6379"
default_password_env = "APP_PW"
[[bdbs]]
uid = 2
name = "other"
listen = "127.0.0.1:12001"
upstream = "redis://10.0.0.2:6379"
upstream_password_env = "UP_PW"
"#;

    fn validated() -> Validated {
        let env = |k: &str| match k {
            "APP_PW" => Some("app-secret-value".to_string()),
            "UP_PW" => Some("upstream-secret-value".to_string()),
            _ => None,
        };
        Config::parse(FILE).unwrap().validate(&env).unwrap()
    }

    #[test]
    fn prints_defaults_and_env_names_but_no_secret() {
        let text = render(&validated(), &|k| k == "APP_PW").unwrap();
        for secret in ["pa%40ss-in-url", "pa@ss-in-url", "app-secret-value", "upstream-secret-value"] {
            assert!(!text.contains(secret), "{secret} printed:\n{text}");
        }
        assert!(text.contains("upstream = \"redis://svc:REDACTED@10.0.0.1:6379\""), "{text}");
        assert!(text.contains("upstream = \"redis://10.0.0.2:6379\""), "{text}");
        assert!(text.contains("#   APP_PW (bdbs[0].default_password_env): set"), "{text}");
        assert!(text.contains("#   UP_PW (bdbs[1].upstream_password_env): NOT SET"), "{text}");
        assert!(text.contains("#   TURNSTILE_ADMIN_PASSWORD ("), "{text}");
        assert!(text.contains("#   API_PW (admin.credential_envs, "), "{text}");
        // Defaults the file left out are filled in.
        for default in
            ["tls = true", "argon2_m_cost = 19456", "auth_timeout_secs = 30", "max_connections = 0"]
        {
            assert!(text.contains(default), "{default} missing:\n{text}");
        }
    }

    #[test]
    fn the_output_loads_back_to_the_same_settings() {
        let v = validated();
        let text = render(&v, &|_| true).unwrap();
        let back = Config::parse(&text).unwrap();
        assert_eq!(back.bdbs.len(), 2);
        assert_eq!(back.auth.argon2_m_cost, v.config.auth.argon2_m_cost);
        assert_eq!(back.bdbs[1].upstream_password_env.as_deref(), Some("UP_PW"));
        assert_eq!(back.store.dir, v.config.store.dir);
        assert_eq!(back.admin.credential_envs, v.config.admin.credential_envs);
        assert_eq!(back.admin.credential_envs["API_PW"], ["10.0.0.3:6379", "10.0.0.4:6379"]);
    }
}
