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

/// A key's owner must be an internal admin or an integration user of the
/// same tenant as the key.
pub fn may_own_keys(owner: &User, tenant_of_key: crate::TenantId) -> bool {
    owner.tenant_id == tenant_of_key && matches!(owner.role, Role::InternalAdmin | Role::IntegrationUser)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TenantId, UserId};
    use uuid::Uuid;

    fn user(tenant: TenantId, role: Role) -> User {
        User { id: UserId(Uuid::nil()), tenant_id: tenant, email: "a@b.c".into(), name: "A".into(), role }
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
    }
}
