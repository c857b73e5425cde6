//! Usage counts: each replica's flush adds its counts to the stored ones
//! (`INSERT … ON CONFLICT DO UPDATE SET count = count + excluded.count`, so
//! replicas sum exactly), per key and per tenant, by hour and by day; and
//! the last use of each key, forward only.
//!
//! Each key also keeps its successful verifications of the recent days in
//! `api_keys.usage_30d`, so that the key table can be ordered by them from
//! an index. `usage_window` holds the first day that sum covers: a flush
//! adds what it counted on that day or later (reading the window under a
//! shared lock), and [`Store::advance_usage_window`] moves the window on,
//! taking off the days that left it, under an exclusive lock. The two
//! serialize, so the sum equals the day rows from the window's first day on,
//! exactly, with any number of replicas flushing.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use latchkey_domain::usage::{Granularity, LastUse, UsageOutcome, UsageRange, UsageRow};
use latchkey_domain::{ApiKeyId, TenantId};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, Func, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QuerySelect, Set};

use super::keys::row::api_key;
use crate::{Store, StoreResult, storable};

pub(crate) mod key_usage {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "key_usage")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_id: Uuid,
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub bucket_seconds: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub period_start: DateTimeUtc,
        #[sea_orm(primary_key, auto_increment = false)]
        pub outcome: String,
        pub count: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod tenant_usage {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenant_usage")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub bucket_seconds: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub period_start: DateTimeUtc,
        #[sea_orm(primary_key, auto_increment = false)]
        pub outcome: String,
        pub count: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod usage_window {
    use sea_orm::entity::prelude::*;

    /// The one row (id 1): the first day `api_keys.usage_30d` counts; none
    /// until the first window is set.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_window")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub starts_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod usage_report_receipt {
    use sea_orm::entity::prelude::*;

    /// A usage report received under an `Idempotency-Key`, per reporting key.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_report_receipts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reporter_key_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub idempotency_key: String,
        /// What identifies the report's content (the app's digest).
        pub report_digest: String,
        pub received_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The id of `usage_window`'s one row.
const USAGE_WINDOW_ROW: i32 = 1;

/// A usage report's receipt: who sent it, under which idempotency key,
/// with what content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageReceipt {
    /// The key that reported.
    pub reporter: ApiKeyId,
    /// The client's `Idempotency-Key`.
    pub idempotency_key: String,
    /// The digest of the report's content.
    pub digest: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// What [`Store::record_usage_once`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The report was new: its usage is written.
    Recorded,
    /// A report under the same key was received before (nothing written):
    /// the digest of that one (`None` if its receipt was dropped meanwhile).
    Seen { digest: Option<String> },
}

/// Verifications of one key counted in one hour under one outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageDelta {
    /// The key.
    pub key_id: ApiKeyId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The start of the UTC hour.
    pub hour: DateTime<Utc>,
    /// What they counted as.
    pub outcome: UsageOutcome,
    /// How many.
    pub count: u64,
}

/// What one flush writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageBatch {
    /// Counts to add.
    pub counts: Vec<UsageDelta>,
    /// The latest use of keys (applied only where newer than the stored one).
    pub last_uses: Vec<(ApiKeyId, LastUse)>,
}

impl UsageBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.last_uses.is_empty()
    }
}

/// Rows per insert statement (6 values each, well under PostgreSQL's 65,535).
const ROWS_PER_INSERT: usize = 1_000;

type Bucket = (i32, DateTime<Utc>, &'static str);

fn count_column(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[derive(FromQueryResult)]
struct RowOfSeries {
    period_start: DateTime<Utc>,
    outcome: String,
    count: i64,
}

/// Adds a batch's counts (to the hour and to the day, of the key and of its
/// tenant) and moves last uses forward, inside `txn`.
async fn write_usage(txn: &sea_orm::DatabaseTransaction, batch: &UsageBatch) -> StoreResult<()> {
    let mut per_key: BTreeMap<(uuid::Uuid, Bucket), (uuid::Uuid, u64)> = BTreeMap::new();
    let mut per_tenant: BTreeMap<(uuid::Uuid, Bucket), u64> = BTreeMap::new();
    for delta in &batch.counts {
        for granularity in Granularity::ALL {
            let bucket = (granularity.seconds(), granularity.bucket_of(delta.hour), delta.outcome.as_str());
            per_key.entry((delta.key_id.0, bucket)).or_insert((delta.tenant_id.0, 0)).1 += delta.count;
            *per_tenant.entry((delta.tenant_id.0, bucket)).or_insert(0) += delta.count;
        }
    }
    let window = usage_window::Entity::find_by_id(USAGE_WINDOW_ROW).lock_shared().one(txn).await?;
    if let Some(starts_at) = window.and_then(|w| w.starts_at) {
        let mut in_window: BTreeMap<uuid::Uuid, u64> = BTreeMap::new();
        for delta in &batch.counts {
            if delta.hour >= starts_at && UsageOutcome::VALID_CODES.contains(&delta.outcome.as_str()) {
                *in_window.entry(delta.key_id.0).or_insert(0) += delta.count;
            }
        }
        add_to_usage_in_window(txn, in_window).await?;
    }
    let key_rows: Vec<key_usage::ActiveModel> = per_key
        .into_iter()
        .map(|((key_id, (seconds, start, outcome)), (tenant_id, count))| key_usage::ActiveModel {
            key_id: Set(key_id),
            tenant_id: Set(tenant_id),
            bucket_seconds: Set(seconds),
            period_start: Set(start),
            outcome: Set(outcome.to_owned()),
            count: Set(count_column(count)),
        })
        .collect();
    {
        use key_usage::{Column, Entity};
        let keys = [Column::KeyId, Column::BucketSeconds, Column::PeriodStart, Column::Outcome];
        add_counts::<Entity>(txn, key_rows, keys, Column::Count).await?;
    }
    let tenant_rows: Vec<tenant_usage::ActiveModel> = per_tenant
        .into_iter()
        .map(|((tenant_id, (seconds, start, outcome)), count)| tenant_usage::ActiveModel {
            tenant_id: Set(tenant_id),
            bucket_seconds: Set(seconds),
            period_start: Set(start),
            outcome: Set(outcome.to_owned()),
            count: Set(count_column(count)),
        })
        .collect();
    {
        use tenant_usage::{Column, Entity};
        let keys = [Column::TenantId, Column::BucketSeconds, Column::PeriodStart, Column::Outcome];
        add_counts::<Entity>(txn, tenant_rows, keys, Column::Count).await?;
    }
    move_last_uses_forward(txn, &batch.last_uses).await?;
    Ok(())
}

#[derive(FromQueryResult)]
struct KeyTotal {
    key_id: uuid::Uuid,
    tenant_id: uuid::Uuid,
    total: i64,
}

fn rows_of(rows: Vec<RowOfSeries>) -> Vec<UsageRow> {
    rows.into_iter()
        .map(|r| UsageRow { start: r.period_start, outcome: r.outcome, count: u64::try_from(r.count).unwrap_or(0) })
        .collect()
}

/// Inserts count rows of `E`, adding each to the row already there (the
/// same `keys`): `count = count + excluded.count`.
async fn add_counts<E>(
    txn: &sea_orm::DatabaseTransaction,
    rows: Vec<E::ActiveModel>,
    keys: [E::Column; 4],
    count: E::Column,
) -> StoreResult<()>
where
    E: EntityTrait + Default,
    E::ActiveModel: Clone + Send,
{
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let add = OnConflict::columns(keys)
            .value(count, Expr::col((E::default(), count)).add(Expr::cust("excluded.count")))
            .to_owned();
        E::insert_many(chunk.to_vec()).on_conflict(add).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// Adds each key's count to its `usage_30d`: one statement per thousand
/// keys, `usage_30d + CASE id WHEN … THEN … END`.
async fn add_to_usage_in_window(
    txn: &sea_orm::DatabaseTransaction,
    counts: BTreeMap<uuid::Uuid, u64>,
) -> StoreResult<()> {
    let counts: Vec<(uuid::Uuid, u64)> = counts.into_iter().collect();
    for chunk in counts.chunks(ROWS_PER_INSERT) {
        let added = chunk.iter().fold(CaseStatement::new(), |case, (id, count)| {
            case.case(api_key::Column::Id.eq(*id), Expr::val(count_column(*count)))
        });
        api_key::Entity::update_many()
            .col_expr(api_key::Column::Usage30d, Expr::col(api_key::Column::Usage30d).add(added.finally(0)))
            .filter(api_key::Column::Id.is_in(chunk.iter().map(|(id, _)| *id)))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// Keys per statement of [`move_last_uses_forward`] (11 values each).
const LAST_USES_PER_UPDATE: usize = 500;

/// Moves each key's last use forward to the one given, where it is newer:
/// one statement per [`LAST_USES_PER_UPDATE`] keys (`CASE id WHEN … THEN
/// … END` for each column), not one per key, so that a flush of a hundred
/// thousand keys takes a few hundred statements.
async fn move_last_uses_forward(txn: &sea_orm::DatabaseTransaction, uses: &[(ApiKeyId, LastUse)]) -> StoreResult<()> {
    let mut latest: BTreeMap<uuid::Uuid, &LastUse> = BTreeMap::new();
    for (id, last) in uses {
        let entry = latest.entry(id.0).or_insert(last);
        if last.at > entry.at {
            *entry = last;
        }
    }
    let latest: Vec<(uuid::Uuid, &LastUse)> = latest.into_iter().collect();
    for chunk in latest.chunks(LAST_USES_PER_UPDATE) {
        let per_key = |value: &dyn Fn(&LastUse) -> Expr, column: api_key::Column| {
            chunk
                .iter()
                .fold(CaseStatement::new(), |case, (id, last)| case.case(api_key::Column::Id.eq(*id), value(last)))
                .finally(Expr::col(column))
        };
        let at = |last: &LastUse| Expr::value(storable(last.at));
        let cloud = |last: &LastUse| Expr::value(last.cloud.map(|c| c.as_str().to_owned()));
        let address = |last: &LastUse| Expr::value(last.client_address.map(|a| a.to_string()));
        let agent = |last: &LastUse| Expr::value(last.user_agent.clone());
        let newer = api_key::Column::LastUsedAt
            .is_null()
            .or(Expr::col(api_key::Column::LastUsedAt).lt(per_key(&at, api_key::Column::LastUsedAt)));
        api_key::Entity::update_many()
            .col_expr(api_key::Column::LastUsedAt, per_key(&at, api_key::Column::LastUsedAt).into())
            .col_expr(api_key::Column::LastUsedCloud, per_key(&cloud, api_key::Column::LastUsedCloud).into())
            .col_expr(api_key::Column::LastUsedAddress, per_key(&address, api_key::Column::LastUsedAddress).into())
            .col_expr(api_key::Column::LastUsedUserAgent, per_key(&agent, api_key::Column::LastUsedUserAgent).into())
            .filter(api_key::Column::Id.is_in(chunk.iter().map(|(id, _)| *id)))
            .filter(newer)
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// The successful verifications of the key of the row on the days from
/// `from` (inclusive) to `to` (exclusive, none: no end), from its day rows.
fn valid_days_of_key(from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> sea_orm::sea_query::SelectStatement {
    use key_usage::{Column, Entity};
    let mut rows = sea_orm::sea_query::Query::select();
    rows.expr(Func::coalesce([Expr::from(Func::sum(Expr::col((Entity, Column::Count)))), Expr::val(0i64)]))
        .from(Entity)
        .and_where(Expr::col((Entity, Column::KeyId)).equals((api_key::Entity, api_key::Column::Id)));
    valid_days(&mut rows, from, to);
    rows
}

/// The keys with successful verifications on the days from `from` to `to`.
fn keys_with_valid_days(from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> sea_orm::sea_query::SelectStatement {
    use key_usage::{Column, Entity};
    let mut rows = sea_orm::sea_query::Query::select();
    rows.column((Entity, Column::KeyId)).from(Entity);
    valid_days(&mut rows, from, to);
    rows
}

/// Narrows `rows` of `key_usage` to the successful verifications counted
/// by day, on the days from `from` (inclusive) to `to` (exclusive).
fn valid_days(rows: &mut sea_orm::sea_query::SelectStatement, from: DateTime<Utc>, to: Option<DateTime<Utc>>) {
    use key_usage::{Column, Entity};
    rows.and_where(Expr::col((Entity, Column::BucketSeconds)).eq(Granularity::Day.seconds()))
        .and_where(Expr::col((Entity, Column::PeriodStart)).gte(storable(from)))
        .and_where(Expr::col((Entity, Column::Outcome)).is_in(UsageOutcome::VALID_CODES));
    if let Some(to) = to {
        rows.and_where(Expr::col((Entity, Column::PeriodStart)).lt(storable(to)));
    }
}

impl Store {
    /// Moves the usage window to start at `starts_at` (a day): takes the
    /// days that left it off each key's `usage_30d` (they are still stored:
    /// call this before [`Store::drop_expired_usage`]), adds back the days a
    /// clock set back brings into it, or, the first time, adds every key's
    /// days from `starts_at`. Each touches only the keys used on those days.
    /// Returns whether the window moved (when it is already there, this is
    /// one read).
    ///
    /// Not bound by the statement timeout: the first time sums every recent
    /// day of every key (64 s at eleven million keys, 360,000 of them used);
    /// flushes wait for it, keeping their counts.
    pub async fn advance_usage_window(&self, starts_at: DateTime<Utc>) -> StoreResult<bool> {
        let txn = self.conn().begin().await?;
        let window = usage_window::Entity::find_by_id(USAGE_WINDOW_ROW).lock_exclusive().one(&txn).await?;
        let current = window.and_then(|w| w.starts_at);
        if current == Some(starts_at) {
            txn.commit().await?;
            return Ok(false);
        }
        if txn.get_database_backend() == DbBackend::Postgres {
            txn.execute_unprepared("SET LOCAL statement_timeout = 0").await?;
        }
        let (from, to, sign) = match current {
            Some(old) if old < starts_at => (old, Some(starts_at), -1),
            Some(old) => (starts_at, Some(old), 1),
            None => (starts_at, None, 1),
        };
        let days = Expr::SubQuery(None, Box::new(valid_days_of_key(from, to).into()));
        let usage = Expr::col(api_key::Column::Usage30d);
        api_key::Entity::update_many()
            .col_expr(api_key::Column::Usage30d, if sign < 0 { usage.sub(days) } else { usage.add(days) })
            .filter(api_key::Column::Id.in_subquery(keys_with_valid_days(from, to)))
            .exec(&txn)
            .await?;
        usage_window::Entity::update_many()
            .col_expr(usage_window::Column::StartsAt, Expr::value(storable(starts_at)))
            .filter(usage_window::Column::Id.eq(USAGE_WINDOW_ROW))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Adds a flush's counts (to the hour and to the day, of the key and of
    /// its tenant) and moves last uses forward, in one transaction.
    pub async fn record_usage(&self, batch: &UsageBatch) -> StoreResult<()> {
        let txn = self.conn().begin().await?;
        write_usage(&txn, batch).await?;
        txn.commit().await?;
        Ok(())
    }

    /// [`Store::record_usage`] under `receipt`, in one transaction: written
    /// only if no report with the same reporter and idempotency key was
    /// received before (the receipt's primary key decides, across replicas).
    pub async fn record_usage_once(&self, receipt: &UsageReceipt, batch: &UsageBatch) -> StoreResult<ReceiptOutcome> {
        use usage_report_receipt::{ActiveModel, Column, Entity};
        let txn = self.conn().begin().await?;
        let row = ActiveModel {
            reporter_key_id: Set(receipt.reporter.0),
            idempotency_key: Set(receipt.idempotency_key.clone()),
            report_digest: Set(receipt.digest.clone()),
            received_at: Set(storable(receipt.received_at)),
        };
        let inserted = Entity::insert(row)
            .on_conflict(OnConflict::columns([Column::ReporterKeyId, Column::IdempotencyKey]).do_nothing().to_owned())
            .exec_without_returning(&txn)
            .await?;
        if inserted == 0 {
            let before = Entity::find_by_id((receipt.reporter.0, receipt.idempotency_key.clone())).one(&txn).await?;
            txn.commit().await?;
            return Ok(ReceiptOutcome::Seen { digest: before.map(|r| r.report_digest) });
        }
        write_usage(&txn, batch).await?;
        txn.commit().await?;
        Ok(ReceiptOutcome::Recorded)
    }

    /// Drops the receipts of usage reports received before `before`;
    /// returns how many went.
    pub async fn drop_usage_receipts(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        use usage_report_receipt::{Column, Entity};
        let dropped = Entity::delete_many().filter(Column::ReceivedAt.lt(storable(before))).exec(self.conn()).await?;
        Ok(dropped.rows_affected)
    }

    /// The stored counts of one key of `tenant` in `range`.
    pub async fn key_usage(&self, tenant: TenantId, key: ApiKeyId, range: &UsageRange) -> StoreResult<Vec<UsageRow>> {
        use key_usage::{Column, Entity};
        let rows = Entity::find()
            .select_only()
            .columns([Column::PeriodStart, Column::Outcome, Column::Count])
            .filter(Column::KeyId.eq(key.0))
            .filter(Column::TenantId.eq(tenant.0))
            .filter(Column::BucketSeconds.eq(range.granularity.seconds()))
            .filter(Column::PeriodStart.gte(range.from))
            .filter(Column::PeriodStart.lt(range.to))
            .into_model::<RowOfSeries>()
            .all(self.list_reader())
            .await?;
        Ok(rows_of(rows))
    }

    /// The stored counts of all keys of `tenant` in `range`.
    pub async fn tenant_usage(&self, tenant: TenantId, range: &UsageRange) -> StoreResult<Vec<UsageRow>> {
        use tenant_usage::{Column, Entity};
        let rows = Entity::find()
            .select_only()
            .columns([Column::PeriodStart, Column::Outcome, Column::Count])
            .filter(Column::TenantId.eq(tenant.0))
            .filter(Column::BucketSeconds.eq(range.granularity.seconds()))
            .filter(Column::PeriodStart.gte(range.from))
            .filter(Column::PeriodStart.lt(range.to))
            .into_model::<RowOfSeries>()
            .all(self.list_reader())
            .await?;
        Ok(rows_of(rows))
    }

    /// Successful verifications of each of `keys` (of `tenant`) in `range`;
    /// keys without any are absent.
    pub async fn valid_usage_of_keys(
        &self,
        tenant: TenantId,
        keys: &[ApiKeyId],
        range: &UsageRange,
    ) -> StoreResult<HashMap<ApiKeyId, u64>> {
        self.usage_of_keys(tenant, keys, range, true).await
    }

    /// Refused verifications of each of `keys` (of `tenant`) in `range`;
    /// keys without any are absent.
    pub async fn refused_usage_of_keys(
        &self,
        tenant: TenantId,
        keys: &[ApiKeyId],
        range: &UsageRange,
    ) -> StoreResult<HashMap<ApiKeyId, u64>> {
        self.usage_of_keys(tenant, keys, range, false).await
    }

    async fn usage_of_keys(
        &self,
        tenant: TenantId,
        keys: &[ApiKeyId],
        range: &UsageRange,
        valid: bool,
    ) -> StoreResult<HashMap<ApiKeyId, u64>> {
        use key_usage::{Column, Entity};
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let outcomes = if valid {
            Column::Outcome.is_in(UsageOutcome::VALID_CODES)
        } else {
            Column::Outcome.is_not_in(UsageOutcome::VALID_CODES)
        };
        // The tenant is checked on the rows found, not in the query: with it
        // in the query, PostgreSQL's generic plan for this prepared
        // statement (used from its sixth run on) reads every recent row of
        // the tenant (370 ms at ten million keys) instead of probing the
        // primary key for each of the page's keys (under 1 ms).
        let totals = Entity::find()
            .select_only()
            .column(Column::KeyId)
            .column(Column::TenantId)
            .column_as(Expr::cust("CAST(SUM(count) AS BIGINT)"), "total")
            .filter(Column::KeyId.is_in(keys.iter().map(|k| k.0)))
            .filter(Column::BucketSeconds.eq(range.granularity.seconds()))
            .filter(Column::PeriodStart.gte(range.from))
            .filter(Column::PeriodStart.lt(range.to))
            .filter(outcomes)
            .group_by(Column::KeyId)
            .group_by(Column::TenantId)
            .into_model::<KeyTotal>()
            .all(self.list_reader())
            .await?;
        Ok(totals
            .into_iter()
            .filter(|t| t.tenant_id == tenant.0)
            .map(|t| (ApiKeyId(t.key_id), u64::try_from(t.total).unwrap_or(0)))
            .collect())
    }

    /// Drops the buckets older than what each granularity keeps at `now`;
    /// returns how many rows went.
    pub async fn drop_expired_usage(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let mut dropped = 0;
        for granularity in Granularity::ALL {
            let before = granularity.kept_since(now);
            dropped += key_usage::Entity::delete_many()
                .filter(key_usage::Column::BucketSeconds.eq(granularity.seconds()))
                .filter(key_usage::Column::PeriodStart.lt(before))
                .exec(self.conn())
                .await?
                .rows_affected;
            dropped += tenant_usage::Entity::delete_many()
                .filter(tenant_usage::Column::BucketSeconds.eq(granularity.seconds()))
                .filter(tenant_usage::Column::PeriodStart.lt(before))
                .exec(self.conn())
                .await?
                .rows_affected;
        }
        Ok(dropped)
    }
}
