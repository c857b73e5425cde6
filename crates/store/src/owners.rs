//! Owners: the user directory with key counts, and the changes of a user's
//! state (deactivation, role) made inside a unit of work. What such a change
//! means for the user's keys is the application's to decide.

use chrono::{DateTime, Utc};
use latchkey_domain::{ApiKeyId, Role, TenantId, User, UserId};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::user;
use crate::keys::api_key;
use crate::tx::{Tx, Written};
use crate::users::{active_internal_admins, user_from, user_in};
use crate::{Store, StoreResult, storable};

/// Which users of a tenant the directory lists.
#[derive(Clone, Debug, Default)]
pub struct UserFilter {
    /// Only users whose name or email contains this (case-insensitive).
    pub search: Option<latchkey_domain::SearchTerm>,
    /// Only users of this role.
    pub role: Option<latchkey_domain::Role>,
    /// Only active (true) or deactivated (false) users.
    pub active: Option<bool>,
}

/// A page of the directory: users in creation order, each with how many keys
/// it owns, whether more follow, and how many match in all.
#[derive(Clone, Debug)]
pub struct UserPage {
    /// The users and their key counts.
    pub users: Vec<(User, u64)>,
    /// Whether more users follow.
    pub has_next_page: bool,
    /// Users matching the filter in all.
    pub total_count: u64,
}

impl Store {
    /// A page of `tenant`'s users under `filter`, after the user `after`, in
    /// creation order (ids are time-ordered), with their key counts in the
    /// same query.
    pub async fn users_page(
        &self,
        tenant: TenantId,
        filter: &UserFilter,
        after: Option<UserId>,
        first: u64,
    ) -> StoreResult<UserPage> {
        use sea_orm::PaginatorTrait;
        let mut select = user::Entity::find().filter(user::Column::TenantId.eq(tenant.0));
        if let Some(term) = &filter.search {
            let pattern = || crate::contains_pattern(&term.as_str().to_lowercase());
            let name = Expr::expr(sea_orm::sea_query::Func::lower(Expr::col(user::Column::Name))).like(pattern());
            select =
                select.filter(sea_orm::Condition::any().add(name).add(Expr::col(user::Column::Email).like(pattern())));
        }
        if let Some(role) = filter.role {
            select = select.filter(user::Column::Role.eq(role.as_str()));
        }
        match filter.active {
            Some(true) => select = select.filter(user::Column::DeactivatedAt.is_null()),
            Some(false) => select = select.filter(user::Column::DeactivatedAt.is_not_null()),
            None => {}
        }
        let total_count = select.clone().count(self.reader()).await?;
        if let Some(after) = after {
            select = select.filter(user::Column::Id.gt(after.0));
        }
        let rows: Vec<(user::Model, Option<i64>)> = select
            .order_by_asc(user::Column::Id)
            .limit(first + 1)
            .column_as(Expr::cust("(SELECT COUNT(*) FROM api_keys WHERE api_keys.owner_id = users.id)"), "key_count")
            .into_model::<UserWithKeyCount>()
            .all(self.reader())
            .await?
            .into_iter()
            .map(|row| (row.user(), row.key_count))
            .collect();
        let has_next_page = rows.len() as u64 > first;
        let users = rows
            .into_iter()
            .take(usize::try_from(first).unwrap_or(usize::MAX))
            .map(|(model, count)| Ok((user_from(model)?, count.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(UserPage { users, has_next_page, total_count })
    }

    /// The ids of the keys `owner` of `tenant` owns.
    pub async fn key_ids_owned_by(&self, tenant: TenantId, owner: UserId) -> StoreResult<Vec<ApiKeyId>> {
        let ids = api_key::Entity::find()
            .select_only()
            .column(api_key::Column::Id)
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(api_key::Column::OwnerId.eq(owner.0))
            .order_by_asc(api_key::Column::Id)
            .into_tuple::<uuid::Uuid>()
            .all(self.reader())
            .await?;
        Ok(ids.into_iter().map(ApiKeyId).collect())
    }

    /// How many keys `owner` of `tenant` owns.
    pub async fn key_count_of(&self, tenant: TenantId, owner: UserId) -> StoreResult<u64> {
        use sea_orm::PaginatorTrait;
        Ok(api_key::Entity::find()
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(api_key::Column::OwnerId.eq(owner.0))
            .count(self.reader())
            .await?)
    }
}

/// Users inside a unit of work.
impl Tx {
    /// A user of `tenant`, row-locked until the unit of work ends.
    pub async fn locked_user(&self, tenant: TenantId, id: UserId) -> StoreResult<Option<User>> {
        let select = user::Entity::find_by_id(id.0).filter(user::Column::TenantId.eq(tenant.0));
        self.locking(select).one(self.conn()).await?.map(user_from).transpose()
    }

    /// Deactivates a user at `deactivated_at` (or reactivates it with
    /// `None`), unless it already is so.
    pub async fn set_user_deactivated(
        &self,
        tenant: TenantId,
        id: UserId,
        deactivated_at: Option<DateTime<Utc>>,
    ) -> StoreResult<Written<User>> {
        let currently = match deactivated_at {
            Some(_) => user::Column::DeactivatedAt.is_null(),
            None => user::Column::DeactivatedAt.is_not_null(),
        };
        let updated = user::Entity::update_many()
            .col_expr(user::Column::DeactivatedAt, Expr::value(deactivated_at.map(storable)))
            .filter(user::Column::Id.eq(id.0))
            .filter(user::Column::TenantId.eq(tenant.0))
            .filter(currently)
            .exec(self.conn())
            .await?;
        Ok(match user_in(self.conn(), tenant, id).await? {
            None => Written::NotFound,
            Some(user) if updated.rows_affected == 0 => Written::Unchanged(user),
            Some(user) => Written::Done(user),
        })
    }

    /// Sets a user's role.
    pub async fn set_user_role(&self, tenant: TenantId, id: UserId, role: Role) -> StoreResult<()> {
        user::Entity::update_many()
            .col_expr(user::Column::Role, Expr::value(role.as_str()))
            .filter(user::Column::Id.eq(id.0))
            .filter(user::Column::TenantId.eq(tenant.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// The active internal admins of `tenant`, in creation order.
    pub async fn active_internal_admins(&self, tenant: TenantId) -> StoreResult<Vec<User>> {
        active_internal_admins(self.conn(), tenant).await
    }
}

/// A user row and its key count.
#[derive(sea_orm::FromQueryResult)]
struct UserWithKeyCount {
    id: uuid::Uuid,
    tenant_id: uuid::Uuid,
    email: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    deactivated_at: Option<DateTime<Utc>>,
    external_id: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    updated_at: Option<DateTime<Utc>>,
    version: i32,
    deleted_at: Option<DateTime<Utc>>,
    scim_managed: bool,
    user_name: Option<String>,
    user_name_folded: Option<String>,
    rate_limits: Option<String>,
    key_count: Option<i64>,
}

impl UserWithKeyCount {
    fn user(&self) -> user::Model {
        user::Model {
            id: self.id,
            tenant_id: self.tenant_id,
            email: self.email.clone(),
            name: self.name.clone(),
            role: self.role.clone(),
            created_at: self.created_at,
            deactivated_at: self.deactivated_at,
            external_id: self.external_id.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            updated_at: self.updated_at,
            version: self.version,
            deleted_at: self.deleted_at,
            scim_managed: self.scim_managed,
            user_name: self.user_name.clone(),
            user_name_folded: self.user_name_folded.clone(),
            rate_limits: self.rate_limits.clone(),
        }
    }
}
