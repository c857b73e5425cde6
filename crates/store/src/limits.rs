//! Rate limits and credits as stored: the shared count of each limit's
//! window (what replicas have leased of it), a key's limits and credits, and
//! an owner's shared limits. The arithmetic of a lease is a capped add; what
//! to lease, and what credits mean, is the application's.

use chrono::{DateTime, Utc};
use latchkey_domain::limits::{KeyCredits, RateLimits, refill_to_stored};
use latchkey_domain::{ApiKeyId, TenantId, UserId};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};

use crate::entities::{rate_limit_window, user};
use crate::keys::api_key;
use crate::tx::Tx;
use crate::{Store, StoreResult, storable};

/// One window of one limit of a key or an owner.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowId {
    /// The key or owner the limit is on.
    pub subject: uuid::Uuid,
    /// The limit's name.
    pub name: String,
    /// Its period.
    pub period_seconds: u32,
    /// The window's start (seconds since the epoch).
    pub start: i64,
}

/// What a lease of a window got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLease {
    /// Granted now (at most what was asked).
    pub granted: u64,
    /// Leased of the window in all, this grant included.
    pub leased: u64,
}

impl Store {
    /// Takes up to `want` of `window`, never past `limit` in all replicas
    /// together (one row, locked for the take).
    pub async fn lease_window(&self, window: &WindowId, limit: u64, want: u64) -> StoreResult<WindowLease> {
        let txn = self.conn().begin().await?;
        let key = |leased: i64| rate_limit_window::ActiveModel {
            subject_id: Set(window.subject),
            name: Set(window.name.clone()),
            period_seconds: Set(window.period_seconds as i32),
            window_start: Set(window.start),
            leased: Set(leased),
        };
        let columns = [
            rate_limit_window::Column::SubjectId,
            rate_limit_window::Column::Name,
            rate_limit_window::Column::PeriodSeconds,
            rate_limit_window::Column::WindowStart,
        ];
        // Insert first: on SQLite that takes the write lock, on PostgreSQL
        // the row exists to be locked.
        rate_limit_window::Entity::insert(key(0)).on_conflict_do_nothing_on(columns).exec(&txn).await?;
        let the_window = rate_limit_window::Column::SubjectId
            .eq(window.subject)
            .and(rate_limit_window::Column::Name.eq(window.name.as_str()))
            .and(rate_limit_window::Column::PeriodSeconds.eq(window.period_seconds as i32))
            .and(rate_limit_window::Column::WindowStart.eq(window.start));
        let mut select = rate_limit_window::Entity::find().filter(the_window.clone());
        if self.backend() == crate::Backend::Postgres {
            select = select.lock_exclusive();
        }
        let leased = select.one(&txn).await?.map_or(0, |row| Ord::max(row.leased, 0) as u64);
        let granted = Ord::min(want, limit.saturating_sub(leased));
        if granted > 0 {
            rate_limit_window::Entity::update_many()
                .col_expr(
                    rate_limit_window::Column::Leased,
                    Expr::col(rate_limit_window::Column::Leased).add(granted as i64),
                )
                .filter(the_window)
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(WindowLease { granted, leased: leased + granted })
    }

    /// Drops the windows that started before `before` (seconds since the
    /// epoch); returns how many.
    pub async fn drop_past_windows(&self, before: i64) -> StoreResult<u64> {
        let done = rate_limit_window::Entity::delete_many()
            .filter(rate_limit_window::Column::WindowStart.lt(before))
            .exec(self.conn())
            .await?;
        Ok(done.rows_affected)
    }

    /// Gives back credits a replica held but did not spend, unless the
    /// key's credits were set or refilled since (`generation`).
    pub async fn return_credits(&self, key: ApiKeyId, generation: i32, amount: u64) -> StoreResult<bool> {
        let done = api_key::Entity::update_many()
            .col_expr(
                api_key::Column::CreditsRemaining,
                Expr::col(api_key::Column::CreditsRemaining).add(amount as i64),
            )
            .filter(api_key::Column::Id.eq(key.0))
            .filter(api_key::Column::CreditsGeneration.eq(generation))
            .filter(api_key::Column::CreditsRemaining.is_not_null())
            .exec(self.conn())
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// The shared rate limits of a user of `tenant`; `None` for no such user.
    pub async fn owner_rate_limits(&self, tenant: TenantId, owner: UserId) -> StoreResult<Option<RateLimits>> {
        let stored: Option<Option<String>> = user::Entity::find_by_id(owner.0)
            .filter(user::Column::TenantId.eq(tenant.0))
            .select_only()
            .column(user::Column::RateLimits)
            .into_tuple()
            .one(self.reader())
            .await?;
        Ok(stored.map(|s| RateLimits::from_stored(s.as_deref())))
    }
}

impl Tx {
    /// Writes a key's credits whole (none: unlimited).
    pub async fn write_credits(&self, key: ApiKeyId, credits: Option<&KeyCredits>) -> StoreResult<()> {
        let at = |t: Option<DateTime<Utc>>| Expr::value(t.map(storable));
        api_key::Entity::update_many()
            .col_expr(api_key::Column::CreditsRemaining, Expr::value(credits.map(|c| c.remaining)))
            .col_expr(api_key::Column::CreditsAllotment, Expr::value(credits.map(|c| c.allotment)))
            .col_expr(
                api_key::Column::CreditsRefill,
                Expr::value(refill_to_stored(credits.and_then(|c| c.refill.as_ref()))),
            )
            .col_expr(api_key::Column::CreditsSince, at(credits.map(|c| c.since)))
            .col_expr(api_key::Column::CreditsRefilledAt, at(credits.and_then(|c| c.last_refilled_at)))
            .col_expr(api_key::Column::CreditsGeneration, Expr::value(credits.map_or(0, |c| c.generation)))
            .col_expr(api_key::Column::CreditsLowMailedAt, at(credits.and_then(|c| c.low_mailed_at)))
            .col_expr(api_key::Column::CreditsEmptyMailedAt, at(credits.and_then(|c| c.empty_mailed_at)))
            .filter(api_key::Column::Id.eq(key.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Replaces a key's own rate limits, as edited by `edited_by` at `now`.
    pub async fn set_key_rate_limits(
        &self,
        tenant: TenantId,
        key: ApiKeyId,
        limits: &RateLimits,
        edited_by: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::RateLimits, Expr::value(limits.to_stored()))
            .col_expr(api_key::Column::LastEditedAt, Expr::value(storable(now)))
            .col_expr(api_key::Column::LastEditedBy, Expr::value(edited_by.0))
            .filter(api_key::Column::Id.eq(key.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// A user's shared rate limits, row-locked; `None` for no such user.
    pub async fn locked_owner_rate_limits(&self, tenant: TenantId, owner: UserId) -> StoreResult<Option<RateLimits>> {
        let select = user::Entity::find_by_id(owner.0).filter(user::Column::TenantId.eq(tenant.0));
        Ok(self.locking(select).one(self.conn()).await?.map(|u| RateLimits::from_stored(u.rate_limits.as_deref())))
    }

    /// Replaces a user's shared rate limits.
    pub async fn set_owner_rate_limits(&self, tenant: TenantId, owner: UserId, limits: &RateLimits) -> StoreResult<()> {
        user::Entity::update_many()
            .col_expr(user::Column::RateLimits, Expr::value(limits.to_stored()))
            .filter(user::Column::Id.eq(owner.0))
            .filter(user::Column::TenantId.eq(tenant.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
