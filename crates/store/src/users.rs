//! Tenants and users.

use chrono::{DateTime, Utc};
use latchkey_domain::key_policy::KeyPolicy;
use latchkey_domain::{LeakResponse, Role, Tenant, TenantId, User, UserId};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use crate::entities::{tenant, user};
use crate::tx::Tx;
use crate::{Store, StoreError, StoreResult, storable};

/// A user to create.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its address (unique within the tenant, compared case-insensitively).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
}

pub(crate) fn user_from(model: user::Model) -> StoreResult<User> {
    let role = Role::parse(&model.role)
        .ok_or_else(|| StoreError::Corrupt(format!("user {} has role {:?}", model.id, model.role)))?;
    Ok(User {
        id: UserId(model.id),
        tenant_id: TenantId(model.tenant_id),
        email: model.email,
        name: model.name,
        role,
        active: model.deactivated_at.is_none(),
    })
}

pub(crate) async fn user_in<C: ConnectionTrait>(conn: &C, tenant: TenantId, id: UserId) -> StoreResult<Option<User>> {
    user::Entity::find_by_id(id.0)
        .filter(user::Column::TenantId.eq(tenant.0))
        .one(conn)
        .await?
        .map(user_from)
        .transpose()
}

/// The active internal admins of `tenant`, in creation order: who is told
/// of what happens to the tenant's keys beyond their owners.
pub(crate) async fn active_internal_admins<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> StoreResult<Vec<User>> {
    user::Entity::find()
        .filter(user::Column::TenantId.eq(tenant.0))
        .filter(user::Column::Role.eq(Role::InternalAdmin.as_str()))
        .filter(user::Column::DeactivatedAt.is_null())
        .order_by_asc(user::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(user_from)
        .collect()
}

impl Store {
    /// Creates a tenant.
    pub async fn create_tenant(&self, name: &str, now: DateTime<Utc>) -> StoreResult<Tenant> {
        let now = storable(now);
        let id = TenantId::new_at(now);
        let model = tenant::ActiveModel {
            id: Set(id.0),
            name: Set(name.to_owned()),
            created_at: Set(now),
            leak_response: Set(LeakResponse::Revoke.as_str().to_owned()),
            external_id: Set(None),
            scim_may_grant_internal_admin: Set(false),
            // Not named: the row is written the same way on older schemas
            // (migration tests create tenants before the column exists).
            key_policy: sea_orm::ActiveValue::NotSet,
        };
        tenant::Entity::insert(model).exec_without_returning(self.conn()).await?;
        Ok(Tenant { id, name: name.to_owned() })
    }

    /// What `tenant` wants done when one of its keys is reported leaked.
    pub async fn leak_response(&self, tenant: TenantId) -> StoreResult<LeakResponse> {
        let found = tenant::Entity::find_by_id(tenant.0).one(self.reader()).await?;
        Ok(found.and_then(|t| LeakResponse::parse(&t.leak_response)).unwrap_or(LeakResponse::Revoke))
    }

    /// Sets what `tenant` wants done when one of its keys is reported leaked.
    pub async fn set_leak_response(&self, tenant: TenantId, response: LeakResponse) -> StoreResult<()> {
        tenant::Entity::update_many()
            .col_expr(tenant::Column::LeakResponse, sea_orm::sea_query::Expr::value(response.as_str()))
            .filter(tenant::Column::Id.eq(tenant.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// How many keys `owner` of `tenant` owns.
    pub async fn count_keys_owned_by(&self, tenant: TenantId, owner: UserId) -> StoreResult<u64> {
        count_keys_owned_by(self.reader(), tenant, owner).await
    }

    /// `tenant`'s key policy (the default, every rule off, when none is set).
    pub async fn key_policy(&self, tenant: TenantId) -> StoreResult<KeyPolicy> {
        let found = tenant::Entity::find_by_id(tenant.0).one(self.reader()).await?;
        policy_from(found)
    }

    /// Every tenant that set a key policy, with it.
    pub async fn key_policies(&self) -> StoreResult<Vec<(TenantId, KeyPolicy)>> {
        let tenants = tenant::Entity::find().filter(tenant::Column::KeyPolicy.is_not_null()).all(self.reader()).await?;
        tenants.into_iter().map(|t| Ok((TenantId(t.id), policy_from(Some(t))?))).collect()
    }

    /// Whether SCIM may make internal admins in `tenant`.
    pub async fn scim_may_grant_internal_admin(&self, tenant: TenantId) -> StoreResult<bool> {
        let found = tenant::Entity::find_by_id(tenant.0).one(self.reader()).await?;
        Ok(found.is_some_and(|t| t.scim_may_grant_internal_admin))
    }

    /// A user of `tenant` by email address (compared case-insensitively).
    pub async fn user_by_email(&self, tenant: TenantId, email: &str) -> StoreResult<Option<User>> {
        user::Entity::find()
            .filter(user::Column::TenantId.eq(tenant.0))
            .filter(user::Column::Email.eq(email.trim().to_lowercase()))
            .one(self.reader())
            .await?
            .map(user_from)
            .transpose()
    }

    /// A tenant by id.
    pub async fn tenant(&self, id: TenantId) -> StoreResult<Option<Tenant>> {
        Ok(tenant::Entity::find_by_id(id.0)
            .one(self.reader())
            .await?
            .map(|m| Tenant { id: TenantId(m.id), name: m.name }))
    }

    /// The tenant a token names: by its id or, failing that, by its external id.
    pub async fn tenant_by_id_or_external_id(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let by_id = name.parse::<Uuid>().map(|id| tenant::Column::Id.eq(id));
        let by_external_id = tenant::Column::ExternalId.eq(name);
        let condition = match by_id {
            Ok(by_id) => sea_orm::Condition::any().add(by_id).add(by_external_id),
            Err(_) => sea_orm::Condition::all().add(by_external_id),
        };
        let mut found = tenant::Entity::find().filter(condition).all(self.reader()).await?;
        // An id wins over another tenant's external id that happens to equal it.
        found.sort_by_key(|t| t.external_id.as_deref() == Some(name));
        Ok(found.into_iter().next().map(|m| Tenant { id: TenantId(m.id), name: m.name }))
    }

    /// Sets (or, with `None`, clears) how the identity provider names
    /// `tenant`. `None` when there is no such tenant; [`StoreError::Conflict`]
    /// when another tenant has that external id.
    pub async fn set_tenant_external_id(
        &self,
        tenant: TenantId,
        external_id: Option<&str>,
    ) -> StoreResult<Option<Tenant>> {
        let updated = tenant::Entity::update_many()
            .col_expr(tenant::Column::ExternalId, sea_orm::sea_query::Expr::value(external_id.map(str::to_owned)))
            .filter(tenant::Column::Id.eq(tenant.0))
            .exec(self.conn())
            .await?;
        if updated.rows_affected == 0 {
            return Ok(None);
        }
        self.tenant(tenant).await
    }

    /// A user of `tenant` by the identity provider's id for it (SCIM `externalId`, OIDC `sub`).
    pub async fn user_by_external_id(&self, tenant: TenantId, external_id: &str) -> StoreResult<Option<User>> {
        user::Entity::find()
            .filter(user::Column::TenantId.eq(tenant.0))
            .filter(user::Column::ExternalId.eq(external_id))
            .one(self.reader())
            .await?
            .map(user_from)
            .transpose()
    }

    /// Creates a user. Fails with [`StoreError::Conflict`] when the email is
    /// taken in the tenant and [`StoreError::MissingReference`] when the tenant
    /// does not exist.
    pub async fn create_user(&self, new: NewUser, now: DateTime<Utc>) -> StoreResult<User> {
        let now = storable(now);
        let id = UserId::new_at(now);
        let email = new.email.trim().to_lowercase();
        if self.tenant(new.tenant_id).await?.is_none() {
            return Err(StoreError::MissingReference(format!("tenant {}", new.tenant_id)));
        }
        user::ActiveModel {
            id: Set(id.0),
            tenant_id: Set(new.tenant_id.0),
            email: Set(email.clone()),
            name: Set(new.name.clone()),
            role: Set(new.role.as_str().to_owned()),
            created_at: Set(now),
            deactivated_at: Set(None),
            external_id: Set(None),
            given_name: Set(None),
            family_name: Set(None),
            updated_at: Set(None),
            version: Set(1),
            deleted_at: Set(None),
            scim_managed: Set(false),
            user_name: Set(None),
            user_name_folded: Set(None),
            rate_limits: Set(None),
        }
        .insert(self.conn())
        .await?;
        Ok(User { id, tenant_id: new.tenant_id, email, name: new.name, role: new.role, active: true })
    }

    /// A user of `tenant` by id; `None` when unknown or another tenant's.
    pub async fn user(&self, tenant: TenantId, id: UserId) -> StoreResult<Option<User>> {
        user_in(self.reader(), tenant, id).await
    }

    /// A user by id in any tenant (operator commands only; requests always
    /// go through [`Store::user`]).
    pub async fn user_in_any_tenant(&self, id: UserId) -> StoreResult<Option<User>> {
        user::Entity::find_by_id(id.0).one(self.conn()).await?.map(user_from).transpose()
    }

    /// The users of `tenant` among `ids` (unknown ids are skipped).
    pub async fn users_by_ids(&self, tenant: TenantId, ids: &[UserId]) -> StoreResult<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        user::Entity::find()
            .filter(user::Column::TenantId.eq(tenant.0))
            .filter(user::Column::Id.is_in(ids))
            .all(self.reader())
            .await?
            .into_iter()
            .map(user_from)
            .collect()
    }

    /// Everyone in `tenant` who may own keys (active internal admins and
    /// integration users), by name.
    pub async fn key_owner_candidates(&self, tenant: TenantId) -> StoreResult<Vec<User>> {
        user::Entity::find()
            .filter(user::Column::TenantId.eq(tenant.0))
            .filter(user::Column::Role.is_in(latchkey_domain::policy::KEY_OWNER_ROLES.map(Role::as_str)))
            .filter(user::Column::DeactivatedAt.is_null())
            .order_by_asc(user::Column::Name)
            .order_by_asc(user::Column::Id)
            .all(self.conn())
            .await?
            .into_iter()
            .map(user_from)
            .collect()
    }
}

/// Tenant settings inside a unit of work.
impl Tx {
    /// A user of `tenant` by id, read in the transaction.
    pub async fn user(&self, tenant: TenantId, id: UserId) -> StoreResult<Option<User>> {
        user_in(self.conn(), tenant, id).await
    }

    /// What `tenant` wants done when one of its keys is reported leaked.
    pub async fn leak_response(&self, tenant: TenantId) -> StoreResult<LeakResponse> {
        let found = tenant::Entity::find_by_id(tenant.0).one(self.conn()).await?;
        Ok(found.and_then(|t| LeakResponse::parse(&t.leak_response)).unwrap_or(LeakResponse::Revoke))
    }

    /// `tenant`'s key policy, locked until the transaction ends.
    pub async fn locked_key_policy(&self, tenant: TenantId) -> StoreResult<KeyPolicy> {
        let found = self.locking(tenant::Entity::find_by_id(tenant.0)).one(self.conn()).await?;
        policy_from(found)
    }

    /// `tenant`'s key policy, read in the transaction.
    pub async fn key_policy(&self, tenant: TenantId) -> StoreResult<KeyPolicy> {
        policy_from(tenant::Entity::find_by_id(tenant.0).one(self.conn()).await?)
    }

    /// Replaces `tenant`'s key policy.
    pub async fn set_key_policy(&self, tenant: TenantId, policy: &KeyPolicy) -> StoreResult<()> {
        let stored = serde_json::to_string(policy).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tenant::Entity::update_many()
            .col_expr(tenant::Column::KeyPolicy, sea_orm::sea_query::Expr::value(stored))
            .filter(tenant::Column::Id.eq(tenant.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// How many keys `owner` of `tenant` owns.
    pub async fn count_keys_owned_by(&self, tenant: TenantId, owner: UserId) -> StoreResult<u64> {
        count_keys_owned_by(self.conn(), tenant, owner).await
    }

    /// Sets whether SCIM may make internal admins in `tenant`.
    pub async fn set_scim_may_grant_internal_admin(&self, tenant: TenantId, allowed: bool) -> StoreResult<()> {
        tenant::Entity::update_many()
            .col_expr(tenant::Column::ScimMayGrantInternalAdmin, sea_orm::sea_query::Expr::value(allowed))
            .filter(tenant::Column::Id.eq(tenant.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}

/// A stored key policy: none (or an unreadable one, which is logged) is the default.
fn policy_from(tenant: Option<tenant::Model>) -> StoreResult<KeyPolicy> {
    match tenant.and_then(|t| t.key_policy) {
        None => Ok(KeyPolicy::default()),
        Some(stored) => serde_json::from_str(&stored).map_err(|e| StoreError::Corrupt(format!("key policy: {e}"))),
    }
}

async fn count_keys_owned_by<C: ConnectionTrait>(conn: &C, tenant: TenantId, owner: UserId) -> StoreResult<u64> {
    use sea_orm::PaginatorTrait;
    let select = crate::keys::api_key::Entity::find()
        .filter(crate::keys::api_key::Column::TenantId.eq(tenant.0))
        .filter(crate::keys::api_key::Column::OwnerId.eq(owner.0));
    Ok(select.count(conn).await?)
}
