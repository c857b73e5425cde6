//! The key table: filters by status, owner and description, keyset paging
//! in four orders, and the other reads of whole keys.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use latchkey_domain::key_policy::PolicyBreaches;
use latchkey_domain::policy::KEY_OWNER_ROLES;
use latchkey_domain::{ApiKey, ApiKeyId, ExpiryNotice, KeyStatus, Role, SearchTerm, TenantId, UserId};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
use sea_orm::{Condition, Order};

use super::row::{api_key, key_from};
use crate::entities::user;
use crate::{Store, StoreResult, storable};

/// How the key table is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyOrderField {
    /// By creation (id order).
    #[default]
    CreatedAt,
    /// By expiry; keys that never expire come last.
    ExpiresAt,
    /// By last use; keys never used come last.
    LastUsedAt,
    /// By successful verifications in the last 30 days (the usage window).
    Usage30d,
}

/// Where a page continues: after this key, which had this value of the
/// ordering field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCursor {
    /// The last key of the previous page.
    pub id: ApiKeyId,
    /// Its value of a time ordering field (none for the keys that come last).
    pub value: Option<DateTime<Utc>>,
    /// Its value of a count ordering field.
    pub count: u64,
}

/// A page request on the key table.
#[derive(Clone, Debug)]
pub struct KeyQuery {
    /// Page size (the caller bounds it).
    pub first: u64,
    /// Continue after this key.
    pub after: Option<KeyCursor>,
    /// The order (ties are broken by id, in the same direction).
    pub order: KeyOrderField,
    /// Ascending rather than descending.
    pub ascending: bool,
    /// Only keys in one of these states at `now` (empty: all).
    pub statuses: Vec<KeyStatus>,
    /// The time statuses are judged at.
    pub now: DateTime<Utc>,
    /// Only keys of this owner.
    pub owner: Option<UserId>,
    /// Only keys whose description contains this (case-insensitive).
    pub search: Option<SearchTerm>,
    /// Only keys with no successful verification since then (never used:
    /// created before then).
    pub unused_since: Option<DateTime<Utc>>,
    /// Only keys that break a key policy like this.
    pub breaking: Option<PolicyBreaches>,
    /// Count the matching keys, up to this many: a count visits each key it
    /// counts (about a second at ten million), so only when the caller
    /// shows it, and only so far.
    pub count_up_to: Option<u64>,
}

/// A page of the key table.
#[derive(Clone, Debug)]
pub struct KeyPage {
    /// The keys, newest first.
    pub keys: Vec<ApiKey>,
    /// Whether older keys remain.
    pub has_next_page: bool,
    /// The keys matching the filters (ignoring the cursor), counted up to
    /// [`KeyQuery::count_up_to`]; none when not asked for.
    pub total_count: Option<u64>,
    /// Each key's successful verifications in the usage window, as the
    /// `USAGE_30D` order saw them.
    pub recent_usage: HashMap<ApiKeyId, u64>,
}

pub(super) async fn key_in<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    id: ApiKeyId,
) -> StoreResult<Option<api_key::Model>> {
    Ok(api_key::Entity::find_by_id(id.0).filter(api_key::Column::TenantId.eq(tenant.0)).one(conn).await?)
}

/// The keys in `status` at `now` (see `ApiKey::status` for the precedence).
fn status_condition(status: KeyStatus, now: DateTime<Utc>) -> Condition {
    let intact = || Condition::all().add(api_key::Column::CompromisedAt.is_null());
    let enabled = || intact().add(api_key::Column::DisabledAt.is_null());
    // Owners whose keys are suspended: deactivated, or of a role that may not own keys.
    let suspending_owners = || {
        sea_orm::sea_query::Query::select()
            .column(user::Column::Id)
            .from(user::Entity)
            .cond_where(
                Condition::any()
                    .add(user::Column::DeactivatedAt.is_not_null())
                    .add(user::Column::Role.is_not_in(KEY_OWNER_ROLES.map(Role::as_str))),
            )
            .to_owned()
    };
    let owner_may_use = || enabled().add(api_key::Column::OwnerId.not_in_subquery(suspending_owners()));
    match status {
        KeyStatus::Compromised => Condition::all().add(api_key::Column::CompromisedAt.is_not_null()),
        KeyStatus::Disabled => intact().add(api_key::Column::DisabledAt.is_not_null()),
        KeyStatus::Suspended => enabled().add(api_key::Column::OwnerId.in_subquery(suspending_owners())),
        KeyStatus::Expired => owner_may_use().add(api_key::Column::ExpiresAt.lte(now)),
        KeyStatus::Active => owner_may_use()
            .add(Condition::any().add(api_key::Column::ExpiresAt.is_null()).add(api_key::Column::ExpiresAt.gt(now))),
    }
}

/// The keys that break a policy as `breaches` describes.
pub(crate) fn breaching(breaches: &PolicyBreaches) -> Condition {
    let mut any = Condition::any();
    if breaches.without_expiry {
        any = any.add(api_key::Column::ExpiresAt.is_null());
    }
    if let Some(after) = breaches.expiring_after {
        any = any.add(api_key::Column::ExpiresAt.gt(storable(after)));
    }
    if breaches.without_permissions {
        any = any.add(api_key::Column::Permissions.is_null());
    }
    any
}

fn filtered(tenant: TenantId, query: &KeyQuery) -> Select<api_key::Entity> {
    let mut select = api_key::Entity::find().filter(api_key::Column::TenantId.eq(tenant.0));
    if let Some(owner) = query.owner {
        select = select.filter(api_key::Column::OwnerId.eq(owner.0));
    }
    if let Some(term) = &query.search {
        select =
            select.filter(Expr::col(api_key::Column::DescriptionFolded).like(crate::contains_pattern(term.as_str())));
    }
    if let Some(since) = query.unused_since {
        let last_sign_of_life =
            Expr::cust("COALESCE(api_keys.last_used_at, api_keys.created_at)").lt(Expr::value(storable(since)));
        select = select.filter(last_sign_of_life);
    }
    if let Some(breaches) = &query.breaking {
        select = select.filter(breaching(breaches));
    }
    if !query.statuses.is_empty() {
        let any = query.statuses.iter().fold(Condition::any(), |any, s| any.add(status_condition(*s, query.now)));
        select = select.filter(any);
    }
    select
}

/// The column a key table order sorts by before the id; none for creation
/// order, which is id order.
fn order_column(field: KeyOrderField) -> Option<api_key::Column> {
    match field {
        KeyOrderField::CreatedAt => None,
        KeyOrderField::ExpiresAt => Some(api_key::Column::ExpiresAt),
        KeyOrderField::LastUsedAt => Some(api_key::Column::LastUsedAt),
        KeyOrderField::Usage30d => None,
    }
}

/// Keys by their successful verifications in the usage window (kept in
/// `usage_30d` for every key, see the `usage` module), after the cursor:
/// one range of the index on (tenant, usage_30d, id).
fn usage_after(mut select: Select<api_key::Entity>, query: &KeyQuery) -> Select<api_key::Entity> {
    let direction = if query.ascending { Order::Asc } else { Order::Desc };
    if let Some(after) = query.after {
        let row = Expr::tuple([Expr::col(api_key::Column::Usage30d), Expr::col(api_key::Column::Id)]);
        let cursor = Expr::tuple([Expr::val(i64::try_from(after.count).unwrap_or(i64::MAX)), Expr::val(after.id.0)]);
        select = select.filter(if query.ascending { row.gt(cursor) } else { row.lt(cursor) });
    }
    select.order_by(api_key::Column::Usage30d, direction.clone()).order_by(api_key::Column::Id, direction)
}

/// Orders by creation (id) and starts after the cursor.
fn ordered_by_id_after(select: Select<api_key::Entity>, query: &KeyQuery) -> Select<api_key::Entity> {
    let direction = if query.ascending { Order::Asc } else { Order::Desc };
    match query.after {
        Some(after) => select.filter(id_beyond(after.id, query.ascending)),
        None => select,
    }
    .order_by(api_key::Column::Id, direction)
}

fn id_beyond(id: ApiKeyId, ascending: bool) -> sea_orm::sea_query::SimpleExpr {
    if ascending { api_key::Column::Id.gt(id.0) } else { api_key::Column::Id.lt(id.0) }
}

/// The keys with a value of `column`, in its order, after the cursor when
/// the cursor is among them: one range of the index on (tenant, column,
/// id), read as far as the page needs, since the cursor is compared as a
/// row `(column, id) < (value, id)` (`>` ascending).
fn with_value_after(
    select: Select<api_key::Entity>,
    column: api_key::Column,
    query: &KeyQuery,
) -> Select<api_key::Entity> {
    let direction = if query.ascending { Order::Asc } else { Order::Desc };
    let mut select = select.filter(column.is_not_null());
    if let Some(KeyCursor { id, value: Some(value), .. }) = query.after {
        let row = Expr::tuple([Expr::col(column), Expr::col(api_key::Column::Id)]);
        let cursor = Expr::tuple([Expr::val(storable(value)), Expr::val(id.0)]);
        select = select.filter(if query.ascending { row.gt(cursor) } else { row.lt(cursor) });
    }
    select.order_by(column, direction.clone()).order_by(api_key::Column::Id, direction)
}

/// The keys without a value of `column` (last in either direction), in id
/// order, after the cursor when the cursor is among them.
fn without_value_after(
    select: Select<api_key::Entity>,
    column: api_key::Column,
    query: &KeyQuery,
) -> Select<api_key::Entity> {
    let direction = if query.ascending { Order::Asc } else { Order::Desc };
    let mut select = select.filter(column.is_null());
    if let Some(KeyCursor { id, value: None, .. }) = query.after {
        select = select.filter(id_beyond(id, query.ascending));
    }
    select.order_by(api_key::Column::Id, direction)
}

/// The expiry-notice stage a key has reached (see `ExpiryNotice::stage`).
pub type NoticeStage = i16;

impl Store {
    /// A key of `tenant`; `None` when unknown or another tenant's.
    pub async fn key(&self, tenant: TenantId, id: ApiKeyId) -> StoreResult<Option<ApiKey>> {
        Ok(key_in(self.reader(), tenant, id).await?.map(key_from))
    }

    /// A page of `tenant`'s key table, in the query's order. Every order is
    /// keyset paging that an index serves from the cursor on (see
    /// migration m0018), so a page deep in the table costs what the first
    /// does; the filters narrow what those ranges yield.
    pub async fn list_keys(&self, tenant: TenantId, query: &KeyQuery) -> StoreResult<KeyPage> {
        let conn = self.list_reader();
        let total_count = match query.count_up_to {
            // COUNT(*) over the first `up_to` matching ids: it stops there.
            Some(up_to) => {
                Some(filtered(tenant, query).select_only().column(api_key::Column::Id).limit(up_to).count(conn).await?)
            }
            None => None,
        };
        let wanted = query.first.saturating_add(1);
        let mut rows = match (query.order, order_column(query.order)) {
            (KeyOrderField::Usage30d, _) => usage_after(filtered(tenant, query), query).limit(wanted).all(conn).await?,
            (_, None) => ordered_by_id_after(filtered(tenant, query), query).limit(wanted).all(conn).await?,
            // Keys with a value come first in either direction, then those without.
            (_, Some(column)) => {
                let mut rows = Vec::new();
                if query.after.is_none_or(|after| after.value.is_some()) {
                    let with_value = with_value_after(filtered(tenant, query), column, query);
                    rows = with_value.limit(wanted).all(conn).await?;
                }
                let missing = wanted.saturating_sub(rows.len() as u64);
                if missing > 0 {
                    let without = without_value_after(filtered(tenant, query), column, query);
                    rows.extend(without.limit(missing).all(conn).await?);
                }
                rows
            }
        };
        let has_next_page = rows.len() as u64 > query.first;
        rows.truncate(usize::try_from(query.first).unwrap_or(usize::MAX));
        let recent_usage =
            rows.iter().map(|row| (ApiKeyId(row.id), u64::try_from(row.usage_30d).unwrap_or(0))).collect();
        Ok(KeyPage { keys: rows.into_iter().map(key_from).collect(), has_next_page, total_count, recent_usage })
    }

    /// The tenant of each of `ids` that exists (one query, by primary key).
    pub async fn tenants_of_keys(&self, ids: &[ApiKeyId]) -> StoreResult<Vec<(ApiKeyId, TenantId)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(uuid::Uuid, uuid::Uuid)> = api_key::Entity::find()
            .select_only()
            .column(api_key::Column::Id)
            .column(api_key::Column::TenantId)
            .filter(api_key::Column::Id.is_in(ids.iter().map(|id| id.0)))
            .into_tuple()
            .all(self.reader())
            .await?;
        Ok(rows.into_iter().map(|(id, tenant)| (ApiKeyId(id), TenantId(tenant))).collect())
    }

    /// Every key of `tenant`, oldest first (for reports).
    pub async fn all_keys(&self, tenant: TenantId) -> StoreResult<Vec<ApiKey>> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .order_by_asc(api_key::Column::Id)
            .all(self.reader())
            .await?
            .into_iter()
            .map(key_from)
            .collect())
    }

    /// Enabled keys of any tenant that expire before `until` (expired ones
    /// included), soonest first, for operators.
    pub async fn keys_expiring_before(&self, until: DateTime<Utc>) -> StoreResult<Vec<ApiKey>> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::DisabledAt.is_null())
            .filter(api_key::Column::ExpiresAt.lte(storable(until)))
            .order_by_asc(api_key::Column::ExpiresAt)
            .order_by_asc(api_key::Column::Id)
            .all(self.reader())
            .await?
            .into_iter()
            .map(key_from)
            .collect())
    }

    /// Enabled keys of any tenant whose next expiry notice (7 days before,
    /// 1 day before, expired) is due at `now`, with the stage they reached,
    /// soonest expiry first, at most `limit`.
    pub async fn keys_due_for_expiry_notice(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<(ApiKey, NoticeStage)>> {
        let now = storable(now);
        let due = ExpiryNotice::LEADS.iter().fold(Condition::any(), |any, (notice, lead)| {
            any.add(
                Condition::all()
                    .add(api_key::Column::ExpiryNoticeStage.lt(notice.stage()))
                    .add(api_key::Column::ExpiresAt.lte(now + *lead)),
            )
        });
        Ok(api_key::Entity::find()
            .filter(api_key::Column::DisabledAt.is_null())
            .filter(api_key::Column::ExpiresAt.is_not_null())
            .filter(due)
            .order_by_asc(api_key::Column::ExpiresAt)
            .limit(limit)
            .all(self.reader())
            .await?
            .into_iter()
            .map(|m| {
                let stage = m.expiry_notice_stage;
                (key_from(m), stage)
            })
            .collect())
    }

    /// Enabled keys of `tenant` idle since before `before` (neither created,
    /// used nor enabled since) that are not waiting out a warning already
    /// sent for that idleness (or whose wait is over at `now`), oldest
    /// first, at most `limit`.
    pub async fn keys_idle_since_before(
        &self,
        tenant: TenantId,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<ApiKey>> {
        let warned_for_older =
            |column: api_key::Column| Expr::col(api_key::Column::UnusedWarnedFor).lt(Expr::col(column));
        let needs_a_step = Condition::any()
            .add(api_key::Column::UnusedWarnedFor.is_null())
            .add(warned_for_older(api_key::Column::CreatedAt))
            .add(warned_for_older(api_key::Column::LastUsedAt))
            .add(warned_for_older(api_key::Column::EnabledAt))
            .add(api_key::Column::UnusedDisableAt.lte(storable(now)));
        Ok(api_key::Entity::find()
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(super::writes::still_idle_since(storable(before)))
            .filter(needs_a_step)
            .order_by_asc(api_key::Column::Id)
            .limit(limit)
            .all(self.reader())
            .await?
            .into_iter()
            .map(key_from)
            .collect())
    }
}

impl crate::tx::Tx {
    /// The owners of `tenant`'s keys that break a policy as `breaches`
    /// describes, with how many each owns.
    pub async fn owners_of_keys_breaching(
        &self,
        tenant: TenantId,
        breaches: &PolicyBreaches,
    ) -> StoreResult<Vec<(UserId, u64)>> {
        let counts: Vec<(uuid::Uuid, i64)> = api_key::Entity::find()
            .select_only()
            .column(api_key::Column::OwnerId)
            .column_as(api_key::Column::Id.count(), "keys")
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(breaching(breaches))
            .group_by(api_key::Column::OwnerId)
            .into_tuple()
            .all(self.conn())
            .await?;
        Ok(counts.into_iter().map(|(owner, keys)| (UserId(owner), u64::try_from(keys).unwrap_or(0))).collect())
    }

    /// The first `limit` keys of `owner` that break a policy as `breaches`
    /// describes, oldest first.
    pub async fn keys_of_owner_breaching(
        &self,
        tenant: TenantId,
        owner: UserId,
        breaches: &PolicyBreaches,
        limit: u64,
    ) -> StoreResult<Vec<ApiKey>> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(api_key::Column::OwnerId.eq(owner.0))
            .filter(breaching(breaches))
            .order_by_asc(api_key::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?
            .into_iter()
            .map(key_from)
            .collect())
    }
}

/// What decides whether a key may rotate itself now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfRotationState {
    /// Its current credential's version.
    pub version: i32,
    /// Whether an admin allowed it.
    pub allowed: bool,
    /// When it last rotated itself.
    pub last_at: Option<DateTime<Utc>>,
}

impl Store {
    /// `tenant`'s key `id` as its self-rotation sees it; none when unknown.
    pub async fn self_rotation_state(&self, tenant: TenantId, id: ApiKeyId) -> StoreResult<Option<SelfRotationState>> {
        Ok(key_in(self.conn(), tenant, id).await?.map(|m| SelfRotationState {
            version: m.credential_version,
            allowed: m.self_rotation,
            last_at: m.self_rotated_at,
        }))
    }
}
