//! The key-event outbox: written in the transaction of the key change, read by
//! the notification dispatcher.

use chrono::{DateTime, Utc};
use latchkey_domain::{
    ApiKeyId, EventDelivery, LeakReport, Notice, NoticeId, NoticeKind, Suspension, TenantId, UserId,
};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    Statement,
};

use crate::entities::key_event;

/// The outbox's backlog.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Events waiting to be sent (retries included).
    pub pending: u64,
    /// Events given up on (an operator requeues them).
    pub failed: u64,
    /// When the oldest pending event happened.
    pub oldest_pending: Option<DateTime<Utc>>,
}
use crate::{Store, StoreError, StoreResult, storable};

/// An event with its delivery state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event.
    pub event: Notice,
    /// Delivery state.
    pub delivery: EventDelivery,
    /// Attempts so far.
    pub attempts: i32,
    /// When the next attempt is due.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was delivered.
    pub sent_at: Option<DateTime<Utc>>,
}

pub(crate) async fn insert_event<C: ConnectionTrait>(conn: &C, event: &Notice) -> StoreResult<()> {
    key_event::ActiveModel {
        id: Set(event.id.0),
        tenant_id: Set(event.tenant_id.0),
        kind: Set(event.kind.as_str().to_owned()),
        key_id: Set(event.key_id.0),
        key_description: Set(event.key_description.clone()),
        key_last_four: Set(event.key_last_four.clone()),
        owner_id: Set(event.owner_id.0),
        owner_email: Set(event.owner_email.clone()),
        owner_name: Set(event.owner_name.clone()),
        actor_id: Set(event.actor_id.0),
        actor_name: Set(event.actor_name.clone()),
        occurred_at: Set(storable(event.occurred_at)),
        status: Set(EventDelivery::Pending.as_str().to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(storable(event.occurred_at)),
        locked_until: Set(None),
        last_error: Set(None),
        sent_at: Set(None),
        key_expires_at: Set(event.key_expires_at.map(storable)),
        previous_secret_expires_at: Set(event.previous_secret_expires_at.map(storable)),
        restrictions_before: Set(event.before_after.as_ref().map(|(before, _)| before.clone())),
        restrictions_after: Set(event.before_after.as_ref().map(|(_, after)| after.clone())),
        leak_source: Set(event.leak.as_ref().and_then(|l| l.source.clone())),
        leak_url: Set(event.leak.as_ref().and_then(|l| l.url.clone())),
        leak_revoked: Set(event.leak.as_ref().map(|l| l.revoked)),
        owner_before: Set(event.owner_change.as_ref().map(|(before, _)| before.clone())),
        owner_after: Set(event.owner_change.as_ref().map(|(_, after)| after.clone())),
        suspended_user_id: Set(event.suspension.as_ref().map(|s| s.user_id.0)),
        suspended_user_name: Set(event.suspension.as_ref().map(|s| s.user_name.clone())),
        suspended_keys: Set(event.suspension.as_ref().map(|s| stored_key_list(&s.keys))),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// A suspension's keys as stored: one line per key, its last four (always
/// four characters), a space, its description (which has no line breaks).
fn stored_key_list(keys: &[(String, String)]) -> String {
    keys.iter().map(|(last_four, description)| format!("{last_four} {description}")).collect::<Vec<_>>().join("\n")
}

fn key_list_from(stored: &str) -> Vec<(String, String)> {
    stored
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(last_four, description)| (last_four.to_owned(), description.to_owned()))
        .collect()
}

pub(crate) fn stored_event_from(m: key_event::Model) -> StoreResult<StoredEvent> {
    let kind =
        NoticeKind::parse(&m.kind).ok_or_else(|| StoreError::Corrupt(format!("event {} kind {:?}", m.id, m.kind)))?;
    let delivery = EventDelivery::parse(&m.status)
        .ok_or_else(|| StoreError::Corrupt(format!("event {} status {:?}", m.id, m.status)))?;
    Ok(StoredEvent {
        event: Notice {
            id: NoticeId(m.id),
            kind,
            tenant_id: TenantId(m.tenant_id),
            key_id: ApiKeyId(m.key_id),
            key_description: m.key_description,
            key_last_four: m.key_last_four,
            owner_id: UserId(m.owner_id),
            owner_email: m.owner_email,
            owner_name: m.owner_name,
            actor_id: UserId(m.actor_id),
            actor_name: m.actor_name.clone(),
            occurred_at: m.occurred_at,
            key_expires_at: m.key_expires_at,
            previous_secret_expires_at: m.previous_secret_expires_at,
            before_after: m.restrictions_before.zip(m.restrictions_after),
            owner_change: m.owner_before.zip(m.owner_after),
            suspension: m.suspended_user_id.zip(m.suspended_user_name).map(|(id, name)| Suspension {
                user_id: UserId(id),
                user_name: name,
                keys: m.suspended_keys.as_deref().map(key_list_from).unwrap_or_default(),
            }),
            leak: m.leak_revoked.map(|revoked| LeakReport {
                reporter: m.actor_name,
                url: m.leak_url,
                source: m.leak_source,
                revoked,
            }),
        },
        delivery,
        attempts: m.attempts,
        next_attempt_at: m.next_attempt_at,
        last_error: m.last_error,
        sent_at: m.sent_at,
    })
}

impl Store {
    /// Events, oldest first, optionally only those in one delivery state.
    pub async fn list_events(&self, delivery: Option<EventDelivery>, limit: u64) -> StoreResult<Vec<StoredEvent>> {
        let mut select = key_event::Entity::find();
        if let Some(d) = delivery {
            select = select.filter(key_event::Column::Status.eq(d.as_str()));
        }
        select
            .order_by_asc(key_event::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?
            .into_iter()
            .map(stored_event_from)
            .collect()
    }

    /// Events of one key, oldest first.
    pub async fn events_of_key(&self, tenant: TenantId, key: ApiKeyId) -> StoreResult<Vec<StoredEvent>> {
        key_event::Entity::find()
            .filter(key_event::Column::TenantId.eq(tenant.0))
            .filter(key_event::Column::KeyId.eq(key.0))
            .order_by_asc(key_event::Column::Id)
            .all(self.conn())
            .await?
            .into_iter()
            .map(stored_event_from)
            .collect()
    }

    /// Claims up to `limit` pending events that are due at `now` and not
    /// claimed by anyone else, for delivery: each gets a lease until
    /// `lease_until` and one more attempt counted. On PostgreSQL concurrent
    /// claimers skip each other's rows (`FOR UPDATE SKIP LOCKED`); SQLite has a
    /// single writer. A claimer that dies leaves its lease to expire, after
    /// which the events are claimed again.
    pub async fn claim_due_events(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<StoredEvent>> {
        let backend = self.conn().get_database_backend();
        let sql = if backend == DbBackend::Postgres { POSTGRES_CLAIM } else { SQLITE_CLAIM };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let statement = Statement::from_sql_and_values(
            backend,
            sql,
            [storable(lease_until).into(), storable(now).into(), limit.into()],
        );
        let mut claimed: Vec<StoredEvent> = key_event::Entity::find()
            .from_raw_sql(statement)
            .all(self.conn())
            .await?
            .into_iter()
            .map(stored_event_from)
            .collect::<StoreResult<_>>()?;
        claimed.sort_by_key(|e| (e.next_attempt_at, e.event.id));
        Ok(claimed)
    }

    /// Marks an event delivered.
    pub async fn mark_event_sent(&self, id: NoticeId, now: DateTime<Utc>) -> StoreResult<()> {
        key_event::Entity::update_many()
            .col_expr(key_event::Column::Status, Expr::value(EventDelivery::Sent.as_str()))
            .col_expr(key_event::Column::SentAt, Expr::value(storable(now)))
            .col_expr(key_event::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(key_event::Column::Id.eq(id.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub async fn reschedule_event(&self, id: NoticeId, next_attempt_at: DateTime<Utc>, error: &str) -> StoreResult<()> {
        key_event::Entity::update_many()
            .col_expr(key_event::Column::NextAttemptAt, Expr::value(storable(next_attempt_at)))
            .col_expr(key_event::Column::LastError, Expr::value(error))
            .col_expr(key_event::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(key_event::Column::Id.eq(id.0))
            .filter(key_event::Column::Status.eq(EventDelivery::Pending.as_str()))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Gives up on an event: it stays, failed, with its reason, until an
    /// operator retries it.
    pub async fn mark_event_failed(&self, id: NoticeId, error: &str) -> StoreResult<()> {
        key_event::Entity::update_many()
            .col_expr(key_event::Column::Status, Expr::value(EventDelivery::Failed.as_str()))
            .col_expr(key_event::Column::LastError, Expr::value(error))
            .col_expr(key_event::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(key_event::Column::Id.eq(id.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Hands a claimed but unattempted event back (on shutdown): the lease is
    /// dropped and the attempt not counted.
    pub async fn release_event(&self, id: NoticeId) -> StoreResult<()> {
        key_event::Entity::update_many()
            .col_expr(key_event::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(key_event::Column::Attempts, Expr::col(key_event::Column::Attempts).sub(1))
            .filter(key_event::Column::Id.eq(id.0))
            .filter(key_event::Column::Status.eq(EventDelivery::Pending.as_str()))
            .filter(key_event::Column::Attempts.gt(0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Queues an event for delivery again from scratch (any state): pending,
    /// no attempts, due now. `None` when there is no such event.
    pub async fn retry_event(&self, id: NoticeId, now: DateTime<Utc>) -> StoreResult<Option<StoredEvent>> {
        let updated = key_event::Entity::update_many()
            .col_expr(key_event::Column::Status, Expr::value(EventDelivery::Pending.as_str()))
            .col_expr(key_event::Column::Attempts, Expr::value(0))
            .col_expr(key_event::Column::NextAttemptAt, Expr::value(storable(now)))
            .col_expr(key_event::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(key_event::Column::SentAt, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(key_event::Column::Id.eq(id.0))
            .exec(self.conn())
            .await?;
        if updated.rows_affected == 0 {
            return Ok(None);
        }
        self.event(id).await
    }

    /// One event.
    pub async fn event(&self, id: NoticeId) -> StoreResult<Option<StoredEvent>> {
        key_event::Entity::find_by_id(id.0).one(self.conn()).await?.map(stored_event_from).transpose()
    }

    /// The outbox's backlog, for operators: pending and failed events and
    /// when the oldest pending one happened (all read through the status index).
    pub async fn outbox_stats(&self) -> StoreResult<OutboxStats> {
        use sea_orm::PaginatorTrait;
        let in_state = |d: EventDelivery| key_event::Entity::find().filter(key_event::Column::Status.eq(d.as_str()));
        let oldest = in_state(EventDelivery::Pending)
            .order_by_asc(key_event::Column::OccurredAt)
            .one(self.reader())
            .await?
            .map(|e| e.occurred_at);
        Ok(OutboxStats {
            pending: in_state(EventDelivery::Pending).count(self.reader()).await?,
            failed: in_state(EventDelivery::Failed).count(self.reader()).await?,
            oldest_pending: oldest,
        })
    }

    /// How many events are in each delivery state: (pending, sent, failed).
    pub async fn event_counts(&self) -> StoreResult<(u64, u64, u64)> {
        use sea_orm::PaginatorTrait;
        let count = |d: EventDelivery| {
            key_event::Entity::find().filter(key_event::Column::Status.eq(d.as_str())).count(self.conn())
        };
        Ok((
            count(EventDelivery::Pending).await?,
            count(EventDelivery::Sent).await?,
            count(EventDelivery::Failed).await?,
        ))
    }
}

const POSTGRES_CLAIM: &str = "UPDATE key_events SET locked_until = $1, attempts = attempts + 1 \
    WHERE id IN (SELECT id FROM key_events WHERE status = 'pending' AND next_attempt_at <= $2 \
    AND (locked_until IS NULL OR locked_until < $2) ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
    RETURNING *";

const SQLITE_CLAIM: &str = "UPDATE key_events SET locked_until = ?1, attempts = attempts + 1 \
    WHERE id IN (SELECT id FROM key_events WHERE status = 'pending' AND next_attempt_at <= ?2 \
    AND (locked_until IS NULL OR locked_until < ?2) ORDER BY next_attempt_at, id LIMIT ?3) \
    RETURNING *";
