//! The key-event outbox: written in the transaction of the key change, read by
//! the notification dispatcher.

use chrono::{DateTime, Utc};
use latchkey_domain::{ApiKeyId, KeyEvent, KeyEventId, KeyEventKind, TenantId, UserId};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};

use crate::entities::key_event;
use crate::{Store, StoreError, StoreResult, storable};

/// Delivery state of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventDelivery {
    /// Waiting to be sent (possibly after a failed attempt).
    Pending,
    /// Delivered.
    Sent,
    /// Given up; needs an operator.
    Failed,
}

impl EventDelivery {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventDelivery::Pending => "pending",
            EventDelivery::Sent => "sent",
            EventDelivery::Failed => "failed",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(EventDelivery::Pending),
            "sent" => Some(EventDelivery::Sent),
            "failed" => Some(EventDelivery::Failed),
            _ => None,
        }
    }
}

/// An event with its delivery state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event.
    pub event: KeyEvent,
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

pub(crate) async fn insert_event<C: ConnectionTrait>(conn: &C, event: &KeyEvent) -> StoreResult<()> {
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
    }
    .insert(conn)
    .await?;
    Ok(())
}

pub(crate) fn stored_event_from(m: key_event::Model) -> StoreResult<StoredEvent> {
    let kind =
        KeyEventKind::parse(&m.kind).ok_or_else(|| StoreError::Corrupt(format!("event {} kind {:?}", m.id, m.kind)))?;
    let delivery = EventDelivery::parse(&m.status)
        .ok_or_else(|| StoreError::Corrupt(format!("event {} status {:?}", m.id, m.status)))?;
    Ok(StoredEvent {
        event: KeyEvent {
            id: KeyEventId(m.id),
            kind,
            tenant_id: TenantId(m.tenant_id),
            key_id: ApiKeyId(m.key_id),
            key_description: m.key_description,
            key_last_four: m.key_last_four,
            owner_id: UserId(m.owner_id),
            owner_email: m.owner_email,
            owner_name: m.owner_name,
            actor_id: UserId(m.actor_id),
            actor_name: m.actor_name,
            occurred_at: m.occurred_at,
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

    /// Pending events that are due at `now`, oldest first.
    pub async fn due_events(&self, now: DateTime<Utc>, limit: u64) -> StoreResult<Vec<StoredEvent>> {
        key_event::Entity::find()
            .filter(key_event::Column::Status.eq(EventDelivery::Pending.as_str()))
            .filter(key_event::Column::NextAttemptAt.lte(storable(now)))
            .order_by_asc(key_event::Column::NextAttemptAt)
            .order_by_asc(key_event::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?
            .into_iter()
            .map(stored_event_from)
            .collect()
    }

    /// Marks an event delivered.
    pub async fn mark_event_sent(&self, id: KeyEventId, now: DateTime<Utc>) -> StoreResult<()> {
        key_event::Entity::update_many()
            .col_expr(key_event::Column::Status, sea_orm::sea_query::Expr::value(EventDelivery::Sent.as_str()))
            .col_expr(key_event::Column::SentAt, sea_orm::sea_query::Expr::value(storable(now)))
            .col_expr(key_event::Column::LockedUntil, sea_orm::sea_query::Expr::value(Option::<DateTime<Utc>>::None))
            .filter(key_event::Column::Id.eq(id.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
