//! Users, roles, Redis ACLs, cluster settings and lockout policy.

use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{Error, Kind, Result};
use super::{Control, complexity, roles, time};
use crate::store::State;
use crate::store::state::{AclRecord, ClusterSettings, LockoutPolicy, RoleRecord, UserRecord};

/// `POST /v1/users`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"name": "app-user", "email": "app@example.com", "password": "user-pw-1", "role_uids": [1]}))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    #[serde(default)]
    pub email: String,
    pub password: String,
    pub role: Option<String>,
    #[serde(default)]
    pub role_uids: Vec<u32>,
    pub auth_method: Option<String>,
}

/// `PUT /v1/users/{uid}`: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(example = json!({"email": "app-team@example.com", "role": "db_viewer"}))]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub name: Option<String>,
    pub email: Option<String>,
    /// Replaces all of the user's passwords with this one.
    pub password: Option<String>,
    pub role: Option<String>,
    pub role_uids: Option<Vec<u32>>,
    pub auth_method: Option<String>,
}

/// `POST /v1/roles`, `PUT /v1/roles/{uid}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(example = json!({"name": "app", "management": "db_viewer"}))]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    pub name: Option<String>,
    pub management: Option<String>,
}

/// `POST /v1/redis_acls`, `PUT /v1/redis_acls/{uid}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(example = json!({"name": "all", "acl": "+@all ~*"}))]
#[serde(deny_unknown_fields)]
pub struct AclInput {
    pub name: Option<String>,
    pub acl: Option<String>,
}

/// `PUT /v1/cluster`: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(example = json!({"password_complexity": true, "password_min_length": 12}))]
#[serde(deny_unknown_fields)]
pub struct ClusterPatch {
    pub name: Option<String>,
    pub password_complexity: Option<bool>,
    pub password_min_length: Option<u32>,
    pub password_expiration_duration: Option<u32>,
}

/// `PUT /v1/cluster/policy`: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(example = json!({"login_lockout_threshold": 10, "login_lockout_duration": 600}))]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    pub login_lockout_threshold: Option<u32>,
    pub login_lockout_counter_reset_after: Option<u64>,
    pub login_lockout_duration: Option<u64>,
}

/// A `redis_acl` rule: rights only, in Redis's ACL grammar.
fn check_rule(rule: &str) -> Result<()> {
    crate::authz::rule::validate(rule)
        .map_err(|e| Error::bad_request("invalid_redis_acl", format!("acl: {e}")))
}

fn check_role(role: &str) -> Result<()> {
    if roles::is_role(role) {
        Ok(())
    } else {
        Err(Error::bad_request("invalid_role", format!("role must be one of {}", roles::ROLES.join(", "))))
    }
}

fn check_role_uids(state: &State, uids: &[u32]) -> Result<()> {
    match uids.iter().find(|u| !state.roles.contains_key(u)) {
        Some(u) => Err(Error::bad_request("role_not_exist", format!("role {u} does not exist"))),
        None => Ok(()),
    }
}

fn check_auth_method(m: Option<&str>) -> Result<()> {
    match m {
        None | Some("regular") => Ok(()),
        Some(_) => Err(Error::bad_request("invalid_parameter", "auth_method must be \"regular\"")),
    }
}

fn name_taken(state: &State, name: &str, email: &str, except: Option<u32>) -> Result<()> {
    for u in state.users.values().filter(|u| Some(u.uid) != except) {
        if u.name == name {
            return Err(Error::new(
                Kind::Conflict,
                "user_already_exists",
                format!("a user named {name:?} exists"),
            ));
        }
        if !email.is_empty() && u.email == email {
            return Err(Error::new(Kind::Conflict, "email_already_exists", "a user with this email exists"));
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name == crate::auth::DEFAULT_USER || name.len() > 256 {
        return Err(Error::bad_request(
            "invalid_parameter",
            "name must be 1-256 characters and not \"default\"",
        ));
    }
    Ok(())
}

impl Control {
    pub async fn create_user(&self, input: NewUser) -> Result<UserRecord> {
        self.create_user_by(None, input).await
    }

    /// Creates a user; the event log names `actor`.
    pub async fn create_user_by(&self, actor: Option<&super::Caller>, input: NewUser) -> Result<UserRecord> {
        self.retrying(|| self.create_user_once(actor, input.clone())).await
    }

    async fn create_user_once(&self, actor: Option<&super::Caller>, input: NewUser) -> Result<UserRecord> {
        check_name(&input.name)?;
        let role = input.role.unwrap_or_else(|| "db_viewer".into());
        check_role(&role)?;
        check_auth_method(input.auth_method.as_deref())?;
        let mut state = self.lock().await?;
        name_taken(&state, &input.name, &input.email, None)?;
        check_role_uids(&state, &input.role_uids)?;
        complexity::check(&state.cluster, &input.password, Some(&input.email))?;
        let set = self.inner.directory.fresh_set(input.password.as_bytes()).await.map_err(|e| {
            tracing::error!(error = %e, "hashing failed");
            Error::new(Kind::Unavailable, "internal_error", "the password could not be processed")
        })?;
        let uid = State::next_uid(&state.users);
        let record = UserRecord {
            uid,
            name: input.name,
            email: input.email,
            role,
            role_uids: input.role_uids,
            auth_method: "regular".into(),
            passwords: set.to_phc(),
            password_meta: super::rotation::reconcile(&set, &[], |id| crate::store::state::PasswordMeta {
                id: id.to_string(),
                created: time::now(),
                creator: actor.map(|c| c.name.clone()),
                ..Default::default()
            }),
            password_expiry: None,
            password_issue_date: time::now(),
            last_login: None,
            locked_until: None,
        };
        let mut next = state.clone();
        next.users.insert(uid, record.clone());
        let mut event = Self::event_by("user_created", actor);
        (event.user, event.user_uid) = (Some(record.name.clone()), Some(uid));
        self.record(&mut next, event);
        self.commit(&mut state, next).await?;
        Ok(record)
    }

    pub async fn update_user(&self, uid: u32, patch: UserPatch) -> Result<UserRecord> {
        self.retrying(|| self.update_user_once(uid, patch.clone())).await
    }

    async fn update_user_once(&self, uid: u32, patch: UserPatch) -> Result<UserRecord> {
        let mut state = self.lock().await?;
        let Some(old) = state.users.get(&uid).cloned() else {
            return Err(Error::not_found("user_not_exist", format!("user {uid} does not exist")));
        };
        let mut user = old.clone();
        if let Some(name) = patch.name {
            check_name(&name)?;
            user.name = name;
        }
        if let Some(email) = patch.email {
            user.email = email;
        }
        name_taken(&state, &user.name, &user.email, Some(uid))?;
        if let Some(role) = patch.role {
            check_role(&role)?;
            user.role = role;
        }
        if let Some(r) = patch.role_uids {
            check_role_uids(&state, &r)?;
            user.role_uids = r;
        }
        check_auth_method(patch.auth_method.as_deref())?;
        if let Some(pw) = &patch.password {
            complexity::check(&state.cluster, pw, Some(&user.email))?;
            let set = self.inner.directory.fresh_set(pw.as_bytes()).await.map_err(|_| {
                Error::new(Kind::Unavailable, "internal_error", "the password could not be processed")
            })?;
            user.passwords = set.to_phc();
            user.password_issue_date = time::now();
            user.locked_until = None;
        }
        let mut next = state.clone();
        next.users.insert(uid, user.clone());
        // Memory follows in `apply`: a rename moves the set, a changed role
        // re-checks rights, a new password closes what used the old one.
        self.commit(&mut state, next).await?;
        drop(state);
        if patch.password.is_some() || old.name != user.name {
            self.forget_login_failures(uid).await;
        }
        Ok(user)
    }

    /// Deletes a user and closes its database connections (as Redis does on
    /// `ACL DELUSER`). The last admin cannot be deleted.
    pub async fn delete_user(&self, uid: u32) -> Result<()> {
        self.delete_user_by(None, uid).await
    }

    /// Deletes a user; the event log names `actor`.
    pub async fn delete_user_by(&self, actor: Option<&super::Caller>, uid: u32) -> Result<()> {
        self.retrying(|| self.delete_user_once(actor, uid)).await
    }

    async fn delete_user_once(&self, actor: Option<&super::Caller>, uid: u32) -> Result<()> {
        let mut state = self.lock().await?;
        let Some(user) = state.users.get(&uid).cloned() else {
            return Err(Error::not_found("user_not_exist", format!("user {uid} does not exist")));
        };
        if user.role == "admin" && state.users.values().filter(|u| u.role == "admin").count() == 1 {
            return Err(Error::new(
                Kind::NotAcceptable,
                "cannot_delete_last_admin",
                "the last admin user cannot be deleted",
            ));
        }
        let mut next = state.clone();
        next.users.remove(&uid);
        let mut event = Self::event_by("user_deleted", actor);
        (event.user, event.user_uid) = (Some(user.name.clone()), Some(uid));
        self.record(&mut next, event);
        // `apply` removes the user and closes its connections.
        self.commit(&mut state, next).await?;
        drop(state);
        self.forget_login_failures(uid).await;
        Ok(())
    }

    pub async fn create_role(&self, input: RoleInput) -> Result<RoleRecord> {
        self.retrying(|| self.create_role_once(input.clone())).await
    }

    async fn create_role_once(&self, input: RoleInput) -> Result<RoleRecord> {
        let name = input
            .name
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| Error::bad_request("missing_parameter", "name is required"))?;
        let management = input
            .management
            .ok_or_else(|| Error::bad_request("missing_parameter", "management is required"))?;
        check_role(&management)?;
        let mut state = self.lock().await?;
        if state.roles.values().any(|r| r.name == name) {
            return Err(Error::new(
                Kind::Conflict,
                "role_already_exists",
                format!("a role named {name:?} exists"),
            ));
        }
        let uid = State::next_uid(&state.roles);
        let role = RoleRecord { uid, name, management };
        let mut next = state.clone();
        next.roles.insert(uid, role.clone());
        self.commit(&mut state, next).await?;
        Ok(role)
    }

    pub async fn update_role(&self, uid: u32, input: RoleInput) -> Result<RoleRecord> {
        self.retrying(|| self.update_role_once(uid, input.clone())).await
    }

    async fn update_role_once(&self, uid: u32, input: RoleInput) -> Result<RoleRecord> {
        let mut state = self.lock().await?;
        let mut role = state
            .roles
            .get(&uid)
            .cloned()
            .ok_or_else(|| Error::not_found("role_not_exist", format!("role {uid} does not exist")))?;
        if let Some(n) = input.name {
            if n.trim().is_empty() {
                return Err(Error::bad_request("invalid_parameter", "name must not be empty"));
            }
            if state.roles.values().any(|r| r.name == n && r.uid != uid) {
                return Err(Error::new(
                    Kind::Conflict,
                    "role_already_exists",
                    format!("a role named {n:?} exists"),
                ));
            }
            role.name = n;
        }
        if let Some(m) = input.management {
            check_role(&m)?;
            role.management = m;
        }
        let mut next = state.clone();
        next.roles.insert(uid, role.clone());
        self.commit(&mut state, next).await?;
        Ok(role)
    }

    /// Deleting a role that users or databases still refer to is refused.
    pub async fn delete_role(&self, uid: u32) -> Result<()> {
        self.retrying(|| self.delete_role_once(uid)).await
    }

    async fn delete_role_once(&self, uid: u32) -> Result<()> {
        let mut state = self.lock().await?;
        if !state.roles.contains_key(&uid) {
            return Err(Error::not_found("role_not_exist", format!("role {uid} does not exist")));
        }
        let used = state.users.values().any(|u| u.role_uids.contains(&uid))
            || state.bdbs.values().any(|b| b.roles_permissions.iter().any(|p| p.role_uid == uid));
        if used {
            return Err(Error::new(
                Kind::Conflict,
                "role_in_use",
                "the role is still given to users or databases",
            ));
        }
        let mut next = state.clone();
        next.roles.remove(&uid);
        self.commit(&mut state, next).await
    }

    pub async fn create_acl(&self, input: AclInput) -> Result<AclRecord> {
        self.create_acl_by(None, input).await
    }

    /// Creates a redis ACL; the event log names `actor`.
    pub async fn create_acl_by(&self, actor: Option<&super::Caller>, input: AclInput) -> Result<AclRecord> {
        self.retrying(|| self.create_acl_once(actor, input.clone())).await
    }

    async fn create_acl_once(&self, actor: Option<&super::Caller>, input: AclInput) -> Result<AclRecord> {
        let name = input
            .name
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| Error::bad_request("missing_parameter", "name is required"))?;
        let acl = input.acl.ok_or_else(|| Error::bad_request("missing_parameter", "acl is required"))?;
        check_rule(&acl)?;
        let mut state = self.lock().await?;
        if state.redis_acls.values().any(|a| a.name == name) {
            return Err(Error::new(
                Kind::Conflict,
                "redis_acl_already_exists",
                format!("a redis ACL named {name:?} exists"),
            ));
        }
        let uid = State::next_uid(&state.redis_acls);
        // No database uses it yet; still, a rule the upstreams refuse is refused now
        // rather than when it is first granted.
        self.check_rule_upstream(&acl, |_| true).await?;
        let record = AclRecord { uid, name, acl };
        let mut next = state.clone();
        next.redis_acls.insert(uid, record.clone());
        let mut event = Self::event_by("redis_acl_created", actor);
        event.redis_acl_uid = Some(uid);
        self.record(&mut next, event);
        self.commit(&mut state, next).await?;
        Ok(record)
    }

    pub async fn update_acl(&self, uid: u32, input: AclInput) -> Result<AclRecord> {
        self.update_acl_by(None, uid, input).await
    }

    /// Changes a redis ACL. A new rule is checked by every upstream that would use
    /// it before it is stored, and is live upstream (and for connected clients, on
    /// their next command) before this returns.
    pub async fn update_acl_by(
        &self,
        actor: Option<&super::Caller>,
        uid: u32,
        input: AclInput,
    ) -> Result<AclRecord> {
        self.retrying(|| self.update_acl_once(actor, uid, input.clone())).await
    }

    async fn update_acl_once(
        &self,
        actor: Option<&super::Caller>,
        uid: u32,
        input: AclInput,
    ) -> Result<AclRecord> {
        if let Some(a) = &input.acl {
            check_rule(a)?;
        }
        let mut state = self.lock().await?;
        let mut record = state.redis_acls.get(&uid).cloned().ok_or_else(|| {
            Error::not_found("redis_acl_not_exist", format!("redis ACL {uid} does not exist"))
        })?;
        if let Some(n) = input.name {
            if n.trim().is_empty() {
                return Err(Error::bad_request("invalid_parameter", "name must not be empty"));
            }
            if state.redis_acls.values().any(|a| a.name == n && a.uid != uid) {
                return Err(Error::new(
                    Kind::Conflict,
                    "redis_acl_already_exists",
                    format!("a redis ACL named {n:?} exists"),
                ));
            }
            record.name = n;
        }
        let changed = input.acl.as_ref().is_some_and(|a| *a != record.acl);
        if let Some(a) = input.acl {
            record.acl = a;
        }
        if changed {
            let users: Vec<u32> = state
                .bdbs
                .values()
                .filter(|b| b.roles_permissions.iter().any(|p| p.redis_acl_uid == uid))
                .map(|b| b.uid)
                .collect();
            self.check_rule_upstream(&record.acl, |bdb| users.contains(&bdb)).await?;
        }
        let mut next = state.clone();
        next.redis_acls.insert(uid, record.clone());
        let mut event = Self::event_by("redis_acl_updated", actor);
        event.redis_acl_uid = Some(uid);
        self.record(&mut next, event);
        // A changed rule is live upstream through `apply` before this returns.
        self.commit(&mut state, next).await?;
        Ok(record)
    }

    pub async fn delete_acl(&self, uid: u32) -> Result<()> {
        self.delete_acl_by(None, uid).await
    }

    /// Deletes a redis ACL no database uses; the event log names `actor`.
    pub async fn delete_acl_by(&self, actor: Option<&super::Caller>, uid: u32) -> Result<()> {
        self.retrying(|| self.delete_acl_once(actor, uid)).await
    }

    async fn delete_acl_once(&self, actor: Option<&super::Caller>, uid: u32) -> Result<()> {
        let mut state = self.lock().await?;
        if !state.redis_acls.contains_key(&uid) {
            return Err(Error::not_found("redis_acl_not_exist", format!("redis ACL {uid} does not exist")));
        }
        if state.bdbs.values().any(|b| b.roles_permissions.iter().any(|p| p.redis_acl_uid == uid)) {
            return Err(Error::new(
                Kind::Conflict,
                "redis_acl_in_use",
                "the redis ACL is still used by a database",
            ));
        }
        let mut next = state.clone();
        next.redis_acls.remove(&uid);
        let mut event = Self::event_by("redis_acl_deleted", actor);
        event.redis_acl_uid = Some(uid);
        self.record(&mut next, event);
        self.commit(&mut state, next).await
    }

    pub async fn update_cluster(&self, patch: ClusterPatch) -> Result<ClusterSettings> {
        self.retrying(|| self.update_cluster_once(patch.clone())).await
    }

    async fn update_cluster_once(&self, patch: ClusterPatch) -> Result<ClusterSettings> {
        let mut state = self.lock().await?;
        let mut c = state.cluster.clone();
        if let Some(n) = patch.name {
            c.name = n;
        }
        if let Some(v) = patch.password_complexity {
            c.password_complexity = v;
        }
        if let Some(v) = patch.password_min_length {
            if !(8..=256).contains(&v) {
                return Err(Error::bad_request(
                    "invalid_parameter",
                    "password_min_length must be between 8 and 256",
                ));
            }
            c.password_min_length = v;
        }
        if let Some(v) = patch.password_expiration_duration {
            c.password_expiration_duration = v;
        }
        let mut next = state.clone();
        next.cluster = c.clone();
        self.commit(&mut state, next).await?;
        Ok(c)
    }

    pub async fn update_policy(&self, patch: PolicyPatch) -> Result<LockoutPolicy> {
        self.retrying(|| self.update_policy_once(patch.clone())).await
    }

    async fn update_policy_once(&self, patch: PolicyPatch) -> Result<LockoutPolicy> {
        let mut state = self.lock().await?;
        let mut p = state.policy.clone();
        if let Some(v) = patch.login_lockout_threshold {
            p.login_lockout_threshold = v;
        }
        if let Some(v) = patch.login_lockout_counter_reset_after {
            p.login_lockout_counter_reset_after = v;
        }
        if let Some(v) = patch.login_lockout_duration {
            p.login_lockout_duration = v;
        }
        let mut next = state.clone();
        next.policy = p.clone();
        self.commit(&mut state, next).await?;
        Ok(p)
    }
}
