//! Users as a SCIM identity provider sees them: the same rows, with the
//! provider's `externalId`, the name's parts, a version (the ETag) and a
//! deletion mark. What a change of a user means for its keys is the
//! application's to decide, in the unit of work it writes through.

use chrono::{DateTime, Utc};
use latchkey_domain::{Role, TenantId, User, UserId};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::entities::user;
use crate::tx::Tx;
use crate::users::user_from;
use crate::{Store, StoreError, StoreResult, storable};

/// A provisioned user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimUser {
    /// The user.
    pub user: User,
    /// Its `userName` (unique in the tenant, compared without case).
    pub user_name: String,
    /// The provider's id for it.
    pub external_id: Option<String>,
    /// `name.givenName`.
    pub given_name: Option<String>,
    /// `name.familyName`.
    pub family_name: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Incremented by every change (the ETag).
    pub version: i32,
}

/// What a provider says a user is (a create or a full replace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimUserWrite {
    /// The `userName`.
    pub user_name: String,
    /// The email address owner notices go to, lower-cased by the store.
    pub email: String,
    /// The display name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// Whether it is active.
    pub active: bool,
    /// The provider's id.
    pub external_id: Option<String>,
    /// `name.givenName`.
    pub given_name: Option<String>,
    /// `name.familyName`.
    pub family_name: Option<String>,
}

/// One `attr eq "value"` of a filter (terms are and-ed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScimMatch {
    /// `userName eq` (case-insensitive).
    UserName(String),
    /// `externalId eq` (exact).
    ExternalId(String),
    /// `emails.value eq` (case-insensitive).
    Email(String),
}

fn scim_user(m: user::Model) -> StoreResult<ScimUser> {
    let (external_id, given_name, family_name) = (m.external_id.clone(), m.given_name.clone(), m.family_name.clone());
    let (created_at, updated_at, version) = (m.created_at, m.updated_at.unwrap_or(m.created_at), m.version);
    let user_name = m.user_name.clone().unwrap_or_else(|| m.email.clone());
    Ok(ScimUser {
        user: user_from(m)?,
        user_name,
        external_id,
        given_name,
        family_name,
        created_at,
        updated_at,
        version,
    })
}

/// A `userName` as compared: trimmed, without case.
fn folded(user_name: &str) -> String {
    user_name.trim().to_lowercase()
}

/// The users SCIM sees in `tenant`: those it provisioned or an admin
/// linked to it, not deleted.
fn live(tenant: TenantId) -> Condition {
    Condition::all()
        .add(user::Column::TenantId.eq(tenant.0))
        .add(user::Column::DeletedAt.is_null())
        .add(user::Column::ScimManaged.eq(true))
}

impl Store {
    /// Links a user of `tenant` to SCIM (or unlinks it): only linked users
    /// are seen and changed by provisioning. False when there is no such user.
    pub async fn set_user_scim_managed(&self, tenant: TenantId, id: UserId, managed: bool) -> StoreResult<bool> {
        let updated = user::Entity::update_many()
            .col_expr(user::Column::ScimManaged, Expr::value(managed))
            .filter(user::Column::Id.eq(id.0))
            .filter(user::Column::TenantId.eq(tenant.0))
            .filter(user::Column::DeletedAt.is_null())
            .exec(self.conn())
            .await?;
        Ok(updated.rows_affected == 1)
    }

    /// A provisioned user of `tenant`; `None` when unknown or deleted.
    pub async fn scim_user(&self, tenant: TenantId, id: UserId) -> StoreResult<Option<ScimUser>> {
        user::Entity::find_by_id(id.0).filter(live(tenant)).one(self.reader()).await?.map(scim_user).transpose()
    }

    /// The users of `tenant` matching every term, in creation order: how many
    /// in all, and `count` of them from the `offset`th.
    pub async fn scim_users(
        &self,
        tenant: TenantId,
        terms: &[ScimMatch],
        offset: u64,
        count: u64,
    ) -> StoreResult<(u64, Vec<ScimUser>)> {
        let mut condition = live(tenant);
        for term in terms {
            condition = condition.add(match term {
                ScimMatch::UserName(v) => user::Column::UserNameFolded.eq(folded(v)),
                ScimMatch::Email(v) => user::Column::Email.eq(v.trim().to_lowercase()),
                ScimMatch::ExternalId(v) => user::Column::ExternalId.eq(v.as_str()),
            });
        }
        let select = user::Entity::find().filter(condition);
        let total = select.clone().count(self.reader()).await?;
        let users = if count == 0 {
            Vec::new()
        } else {
            select
                .order_by_asc(user::Column::Id)
                .offset(offset)
                .limit(count)
                .all(self.reader())
                .await?
                .into_iter()
                .map(scim_user)
                .collect::<StoreResult<_>>()?
        };
        Ok((total, users))
    }

    /// Provisions a user.
    pub async fn scim_create(
        &self,
        tenant: TenantId,
        write: ScimUserWrite,
        now: DateTime<Utc>,
    ) -> StoreResult<ScimUser> {
        let now = storable(now);
        let id = UserId::new_at(now);
        let model = user::ActiveModel {
            id: Set(id.0),
            tenant_id: Set(tenant.0),
            email: Set(write.email.trim().to_lowercase()),
            name: Set(write.name),
            role: Set(write.role.as_str().to_owned()),
            created_at: Set(now),
            deactivated_at: Set((!write.active).then_some(now)),
            external_id: Set(write.external_id),
            given_name: Set(write.given_name),
            family_name: Set(write.family_name),
            updated_at: Set(Some(now)),
            version: Set(1),
            deleted_at: Set(None),
            scim_managed: Set(true),
            user_name_folded: Set(Some(folded(&write.user_name))),
            user_name: Set(Some(write.user_name.trim().to_owned())),
            rate_limits: Set(None),
        };
        scim_user(model.insert(self.conn()).await?)
    }
}

/// Provisioned users inside a unit of work.
impl Tx {
    /// A provisioned user of `tenant`, row-locked; `None` when unknown or deleted.
    pub async fn locked_scim_user(&self, tenant: TenantId, id: UserId) -> StoreResult<Option<ScimUser>> {
        let select = user::Entity::find_by_id(id.0).filter(live(tenant));
        self.locking(select).one(self.conn()).await?.map(scim_user).transpose()
    }

    /// Replaces what a provisioned user is (its version moves on; an
    /// inactive user keeps the time it was first deactivated). The user as
    /// it is now.
    pub async fn replace_scim_user(
        &self,
        tenant: TenantId,
        id: UserId,
        write: ScimUserWrite,
        now: DateTime<Utc>,
    ) -> StoreResult<ScimUser> {
        let now = storable(now);
        let deactivated_at = if write.active {
            Expr::value(Option::<DateTime<Utc>>::None)
        } else {
            Expr::col(user::Column::DeactivatedAt).if_null(now)
        };
        let updated = user::Entity::update_many()
            .col_expr(user::Column::Email, Expr::value(write.email.trim().to_lowercase()))
            .col_expr(user::Column::UserNameFolded, Expr::value(folded(&write.user_name)))
            .col_expr(user::Column::UserName, Expr::value(write.user_name.trim().to_owned()))
            .col_expr(user::Column::Name, Expr::value(write.name))
            .col_expr(user::Column::Role, Expr::value(write.role.as_str()))
            .col_expr(user::Column::DeactivatedAt, deactivated_at)
            .col_expr(user::Column::ExternalId, Expr::value(write.external_id))
            .col_expr(user::Column::GivenName, Expr::value(write.given_name))
            .col_expr(user::Column::FamilyName, Expr::value(write.family_name))
            .col_expr(user::Column::UpdatedAt, Expr::value(Some(now)))
            .col_expr(user::Column::Version, Expr::col(user::Column::Version).add(1))
            .filter(user::Column::Id.eq(id.0))
            .filter(live(tenant))
            .exec(self.conn())
            .await;
        updated?;
        match user::Entity::find_by_id(id.0).one(self.conn()).await? {
            Some(after) => scim_user(after),
            None => Err(StoreError::MissingReference(format!("user {id}"))),
        }
    }

    /// Deletes a provisioned user as the provider sees it: deactivated (since
    /// now, unless it already was), hidden from SCIM, its address and
    /// external id freed; its name stays for the audit trail. Whether there
    /// was one.
    pub async fn delete_scim_user(&self, tenant: TenantId, id: UserId, now: DateTime<Utc>) -> StoreResult<bool> {
        let now = storable(now);
        let updated = user::Entity::update_many()
            .col_expr(user::Column::DeletedAt, Expr::value(Some(now)))
            .col_expr(user::Column::DeactivatedAt, Expr::col(user::Column::DeactivatedAt).if_null(now))
            .col_expr(user::Column::Email, Expr::value(format!("deleted-{}@deleted.invalid", id.0)))
            .col_expr(user::Column::ExternalId, Expr::value(Option::<String>::None))
            .col_expr(user::Column::UserName, Expr::value(Option::<String>::None))
            .col_expr(user::Column::UserNameFolded, Expr::value(Option::<String>::None))
            .col_expr(user::Column::UpdatedAt, Expr::value(Some(now)))
            .filter(user::Column::Id.eq(id.0))
            .filter(live(tenant))
            .exec(self.conn())
            .await?;
        Ok(updated.rows_affected > 0)
    }
}
