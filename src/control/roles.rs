//! Management roles and what each may do on the admin API (RS's permission table).

/// A named permission of the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ViewBdb,
    CreateBdb,
    UpdateBdb,
    DeleteBdb,
    ViewCluster,
    UpdateCluster,
    ViewUser,
    CreateUser,
    UpdateUser,
    DeleteUser,
    /// Create, update, delete roles and redis ACLs.
    ManageRoles,
}

/// Every management role, `none` included (database access only).
pub const ROLES: [&str; 7] =
    ["admin", "cluster_member", "cluster_viewer", "db_member", "db_viewer", "user_manager", "none"];

pub fn is_role(name: &str) -> bool {
    ROLES.contains(&name)
}

/// Whether a user with management role `role` and RBAC roles `role_uids` would be
/// an admin. Only admins may create, change or delete such users (a user manager
/// must not be able to promote itself, or take over an admin by resetting its
/// password).
pub fn makes_admin(state: &crate::store::State, role: Option<&str>, role_uids: &[u32]) -> bool {
    role == Some("admin")
        || role_uids.iter().any(|r| state.roles.get(r).is_some_and(|r| r.management == "admin"))
}

/// Whether management role `role` grants `p`.
pub fn grants(role: &str, p: Permission) -> bool {
    use Permission::*;
    match (role, p) {
        ("none", _) => false,
        ("admin", _) => true,
        (_, ViewBdb | ViewCluster) => true,
        ("cluster_member" | "db_member", CreateBdb | UpdateBdb | DeleteBdb) => true,
        ("user_manager", ViewUser | CreateUser | UpdateUser | DeleteUser | ManageRoles) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::Permission::*;
    use super::*;

    #[test]
    fn table() {
        assert!(grants("db_viewer", ViewBdb) && !grants("db_viewer", UpdateBdb));
        assert!(grants("db_member", UpdateBdb) && !grants("db_member", ViewUser));
        assert!(grants("cluster_member", DeleteBdb) && !grants("cluster_member", UpdateCluster));
        assert!(grants("cluster_viewer", ViewCluster) && !grants("cluster_viewer", CreateBdb));
        assert!(grants("user_manager", CreateUser) && grants("user_manager", ManageRoles));
        assert!(!grants("user_manager", UpdateBdb) && !grants("user_manager", UpdateCluster));
        assert!(grants("admin", UpdateCluster));
        assert!(!grants("none", ViewBdb));
    }
}
