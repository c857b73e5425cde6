//! Who may do what.

use crate::model::{Cloud, Role, User};

/// Only an internal admin acting in the employee cloud may see or change keys.
pub fn may_manage_keys(role: Role, cloud: Cloud) -> bool {
    role == Role::InternalAdmin && cloud == Cloud::Employee
}

/// The clouds an API key works in: both clouds of its tenant.
pub fn clouds_of_api_keys() -> &'static [Cloud] {
    Cloud::ALL
}

/// A key's owner must be an active internal admin or integration user of
/// the same tenant as the key.
pub fn may_own_keys(owner: &User, tenant_of_key: crate::TenantId) -> bool {
    owner.tenant_id == tenant_of_key && owner_may_use_keys(owner)
}

/// Whether keys owned by `owner` work: an active user of a role that may own
/// keys. Otherwise its keys are suspended (kept, not deleted).
pub fn owner_may_use_keys(owner: &User) -> bool {
    owner.active && role_may_own_keys(owner.role)
}

/// The roles that may own keys.
pub const KEY_OWNER_ROLES: [Role; 2] = [Role::InternalAdmin, Role::IntegrationUser];

/// Whether `role` may own keys.
pub fn role_may_own_keys(role: Role) -> bool {
    KEY_OWNER_ROLES.contains(&role)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TenantId, UserId};
    use uuid::Uuid;

    fn user(tenant: TenantId, role: Role) -> User {
        User { id: UserId(Uuid::nil()), tenant_id: tenant, email: "a@b.c".into(), name: "A".into(), role, active: true }
    }

    #[test]
    fn only_internal_admins_in_employee_cloud_manage_keys() {
        assert!(may_manage_keys(Role::InternalAdmin, Cloud::Employee));
        assert!(!may_manage_keys(Role::InternalAdmin, Cloud::Customer));
        assert!(!may_manage_keys(Role::AcademyAdmin, Cloud::Employee));
        assert!(!may_manage_keys(Role::AcademyAdmin, Cloud::Customer));
        assert!(!may_manage_keys(Role::IntegrationUser, Cloud::Employee));
    }

    #[test]
    fn owners_are_admins_or_integration_users_of_the_same_tenant() {
        let t = TenantId(Uuid::from_u128(1));
        let other = TenantId(Uuid::from_u128(2));
        assert!(may_own_keys(&user(t, Role::InternalAdmin), t));
        assert!(may_own_keys(&user(t, Role::IntegrationUser), t));
        assert!(!may_own_keys(&user(t, Role::AcademyAdmin), t));
        assert!(!may_own_keys(&user(other, Role::InternalAdmin), t));
        assert!(!may_own_keys(&User { active: false, ..user(t, Role::InternalAdmin) }, t), "deactivated");
    }
}
