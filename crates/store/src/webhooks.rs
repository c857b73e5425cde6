//! Webhook endpoints, the webhook outbox (one delivery per event and
//! endpoint, written in the transaction of the change) and each delivery's
//! attempts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use latchkey_domain::webhook_events::{
    DeliveryStatus, EndpointSecrets, EventTypes, WebhookAttempt, WebhookDelivery, WebhookEndpoint,
};
use latchkey_domain::webhooks::{SigningSecret, WebhookEventType};
use latchkey_domain::{TenantId, WebhookDeliveryId, WebhookEndpointId};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement,
};

use crate::entities::{webhook_attempt, webhook_delivery, webhook_endpoint};
use crate::{Store, StoreError, StoreResult, Tx, storable};

/// A claimed delivery with what sending it needs.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    /// The delivery.
    pub delivery: WebhookDelivery,
    /// Where it goes.
    pub url: String,
    /// What signs it.
    pub secrets: EndpointSecrets,
}

/// What an attempt leaves a delivery as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// Accepted: the endpoint's failing streak ends.
    Succeeded,
    /// Refused; tried again at this time.
    RetryAt(DateTime<Utc>),
    /// Refused, and the retries are spent.
    Failed,
}

fn endpoint_from(m: webhook_endpoint::Model) -> WebhookEndpoint {
    WebhookEndpoint {
        id: WebhookEndpointId(m.id),
        tenant_id: TenantId(m.tenant_id),
        url: m.url,
        description: m.description,
        event_types: EventTypes::from_stored(&m.event_types),
        enabled: m.enabled,
        created_at: m.created_at,
        disabled_reason: m.disabled_reason,
        failing_since: m.failing_since,
    }
}

fn secrets_from(m: &webhook_endpoint::Model) -> StoreResult<EndpointSecrets> {
    let corrupt = || StoreError::Corrupt(format!("webhook endpoint {} has an unreadable signing secret", m.id));
    let current = SigningSecret::from_stored(&m.secret).ok_or_else(corrupt)?;
    let previous = match (&m.previous_secret, m.previous_secret_until) {
        (Some(secret), Some(until)) => Some((SigningSecret::from_stored(secret).ok_or_else(corrupt)?, until)),
        _ => None,
    };
    Ok(EndpointSecrets { current, previous })
}

fn delivery_from(m: webhook_delivery::Model) -> StoreResult<WebhookDelivery> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("webhook delivery {} {what}", m.id));
    Ok(WebhookDelivery {
        id: WebhookDeliveryId(m.id),
        endpoint_id: WebhookEndpointId(m.endpoint_id),
        tenant_id: TenantId(m.tenant_id),
        event_id: m.event_id,
        event_type: WebhookEventType::parse(&m.event_type).ok_or_else(|| corrupt("event type"))?,
        status: DeliveryStatus::parse(&m.status).ok_or_else(|| corrupt("status"))?,
        payload: m.payload,
        attempts: m.attempts,
        next_attempt_at: m.next_attempt_at,
        created_at: m.created_at,
        finished_at: m.finished_at,
    })
}

fn attempt_from(m: webhook_attempt::Model) -> WebhookAttempt {
    WebhookAttempt {
        attempted_at: m.attempted_at,
        http_status: m.http_status.and_then(|s| u16::try_from(s).ok()),
        duration_ms: m.duration_ms,
        response_body: m.response_body,
        error: m.error,
    }
}

fn attempt_model(delivery: &WebhookDelivery, attempt: &WebhookAttempt) -> webhook_attempt::ActiveModel {
    webhook_attempt::ActiveModel {
        id: Set(latchkey_domain::ids::time_ordered_uuid(attempt.attempted_at)),
        delivery_id: Set(delivery.id.0),
        attempted_at: Set(storable(attempt.attempted_at)),
        http_status: Set(attempt.http_status.map(i32::from)),
        duration_ms: Set(attempt.duration_ms),
        response_body: Set(attempt.response_body.clone()),
        error: Set(attempt.error.clone()),
    }
}

fn endpoint_model(endpoint: &WebhookEndpoint) -> webhook_endpoint::ActiveModel {
    webhook_endpoint::ActiveModel {
        id: Set(endpoint.id.0),
        tenant_id: Set(endpoint.tenant_id.0),
        url: Set(endpoint.url.clone()),
        description: Set(endpoint.description.clone()),
        event_types: Set(endpoint.event_types.stored()),
        enabled: Set(endpoint.enabled),
        created_at: Set(storable(endpoint.created_at)),
        failing_since: Set(endpoint.failing_since.map(storable)),
        disabled_reason: Set(endpoint.disabled_reason.clone()),
        ..Default::default()
    }
}

/// A page of deliveries, newest first.
#[derive(Clone, Debug, Default)]
pub struct DeliveryPage {
    /// The deliveries, each with its attempts (oldest first).
    pub deliveries: Vec<(WebhookDelivery, Vec<WebhookAttempt>)>,
    /// Whether older ones follow.
    pub has_next_page: bool,
}

impl Tx {
    /// How many endpoints `tenant` has.
    pub async fn count_webhook_endpoints(&self, tenant: TenantId) -> StoreResult<u64> {
        let select = webhook_endpoint::Entity::find().filter(webhook_endpoint::Column::TenantId.eq(tenant.0));
        Ok(select.count(self.conn()).await?)
    }

    /// Stores a new endpoint signed by `secret`.
    pub async fn insert_webhook_endpoint(&self, endpoint: &WebhookEndpoint, secret: &SigningSecret) -> StoreResult<()> {
        let mut model = endpoint_model(endpoint);
        model.secret = Set(secret.expose().to_owned());
        model.insert(self.conn()).await?;
        Ok(())
    }

    /// One endpoint of `tenant`, locked until the transaction ends.
    pub async fn locked_webhook_endpoint(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> StoreResult<Option<WebhookEndpoint>> {
        let select = webhook_endpoint::Entity::find_by_id(id.0).filter(webhook_endpoint::Column::TenantId.eq(tenant.0));
        Ok(self.locking(select).one(self.conn()).await?.map(endpoint_from))
    }

    /// Writes an endpoint's settings and state (not its secrets).
    pub async fn update_webhook_endpoint(&self, endpoint: &WebhookEndpoint) -> StoreResult<()> {
        use webhook_endpoint::Column;
        webhook_endpoint::Entity::update_many()
            .col_expr(Column::Url, Expr::value(endpoint.url.clone()))
            .col_expr(Column::Description, Expr::value(endpoint.description.clone()))
            .col_expr(Column::EventTypes, Expr::value(endpoint.event_types.stored()))
            .col_expr(Column::Enabled, Expr::value(endpoint.enabled))
            .col_expr(Column::FailingSince, Expr::value(endpoint.failing_since.map(storable)))
            .col_expr(Column::DisabledReason, Expr::value(endpoint.disabled_reason.clone()))
            .filter(Column::Id.eq(endpoint.id.0))
            .filter(Column::TenantId.eq(endpoint.tenant_id.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Deletes an endpoint with its deliveries and their attempts.
    pub async fn delete_webhook_endpoint(&self, tenant: TenantId, id: WebhookEndpointId) -> StoreResult<bool> {
        let deleted = webhook_endpoint::Entity::delete_many()
            .filter(webhook_endpoint::Column::Id.eq(id.0))
            .filter(webhook_endpoint::Column::TenantId.eq(tenant.0))
            .exec(self.conn())
            .await?;
        Ok(deleted.rows_affected == 1)
    }

    /// Replaces an endpoint's secret with `secret`; the one it had keeps
    /// signing until `previous_until`.
    pub async fn rotate_webhook_secret(
        &self,
        id: WebhookEndpointId,
        secret: &SigningSecret,
        previous_until: DateTime<Utc>,
    ) -> StoreResult<()> {
        webhook_endpoint::Entity::update_many()
            .col_expr(webhook_endpoint::Column::PreviousSecret, Expr::col(webhook_endpoint::Column::Secret))
            .col_expr(webhook_endpoint::Column::PreviousSecretUntil, Expr::value(storable(previous_until)))
            .col_expr(webhook_endpoint::Column::Secret, Expr::value(secret.expose()))
            .filter(webhook_endpoint::Column::Id.eq(id.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// The enabled endpoints of `tenant` (the receivers of its events).
    pub async fn enabled_webhook_endpoints(&self, tenant: TenantId) -> StoreResult<Vec<WebhookEndpoint>> {
        let endpoints = webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::TenantId.eq(tenant.0))
            .filter(webhook_endpoint::Column::Enabled.eq(true))
            .all(self.conn())
            .await?;
        Ok(endpoints.into_iter().map(endpoint_from).collect())
    }

    /// Queues deliveries, due at once.
    pub async fn insert_webhook_deliveries(&self, deliveries: &[WebhookDelivery]) -> StoreResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let models = deliveries.iter().map(|d| webhook_delivery::ActiveModel {
            id: Set(d.id.0),
            tenant_id: Set(d.tenant_id.0),
            endpoint_id: Set(d.endpoint_id.0),
            event_id: Set(d.event_id),
            event_type: Set(d.event_type.as_str().to_owned()),
            payload: Set(d.payload.clone()),
            status: Set(d.status.as_str().to_owned()),
            attempts: Set(d.attempts),
            next_attempt_at: Set(storable(d.next_attempt_at)),
            locked_until: Set(None),
            created_at: Set(storable(d.created_at)),
            finished_at: Set(None),
        });
        webhook_delivery::Entity::insert_many(models).exec(self.conn()).await?;
        Ok(())
    }

    /// Queues a delivery of `tenant` again, due at `now`, whatever its
    /// state, with a fresh retry schedule (its attempts so far stay in the
    /// log); `None` when there is no such delivery.
    pub async fn requeue_webhook_delivery(
        &self,
        tenant: TenantId,
        id: WebhookDeliveryId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<WebhookDelivery>> {
        let updated = webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::Status, Expr::value(DeliveryStatus::Pending.as_str()))
            .col_expr(webhook_delivery::Column::Attempts, Expr::value(0))
            .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(storable(now)))
            .col_expr(webhook_delivery::Column::FinishedAt, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(webhook_delivery::Column::Id.eq(id.0))
            .filter(webhook_delivery::Column::TenantId.eq(tenant.0))
            .exec(self.conn())
            .await?;
        if updated.rows_affected == 0 {
            return Ok(None);
        }
        let found = webhook_delivery::Entity::find_by_id(id.0).one(self.conn()).await?;
        found.map(delivery_from).transpose()
    }

    /// Records attempts that succeeded, in three statements whatever their
    /// number: the attempts, their deliveries (finished at the latest of
    /// them), and the end of their endpoints' failing streaks.
    pub async fn record_webhook_successes(&self, succeeded: &[(&WebhookDelivery, &WebhookAttempt)]) -> StoreResult<()> {
        let Some(finished) = succeeded.iter().map(|(_, a)| storable(a.attempted_at)).max() else { return Ok(()) };
        let ids: Vec<uuid::Uuid> = succeeded.iter().map(|(d, _)| d.id.0).collect();
        // Deliveries deleted meanwhile (with their endpoint) get no attempt.
        let live: std::collections::HashSet<uuid::Uuid> = webhook_delivery::Entity::find()
            .select_only()
            .column(webhook_delivery::Column::Id)
            .filter(webhook_delivery::Column::Id.is_in(ids.clone()))
            .into_tuple::<uuid::Uuid>()
            .all(self.conn())
            .await?
            .into_iter()
            .collect();
        let attempts: Vec<webhook_attempt::ActiveModel> = succeeded
            .iter()
            .filter(|(d, _)| live.contains(&d.id.0))
            .map(|(delivery, attempt)| attempt_model(delivery, attempt))
            .collect();
        if attempts.is_empty() {
            return Ok(());
        }
        webhook_attempt::Entity::insert_many(attempts).exec(self.conn()).await?;
        webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::Status, Expr::value(DeliveryStatus::Succeeded.as_str()))
            .col_expr(webhook_delivery::Column::Attempts, Expr::col(webhook_delivery::Column::Attempts).add(1))
            .col_expr(webhook_delivery::Column::FinishedAt, Expr::value(finished))
            .col_expr(webhook_delivery::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(webhook_delivery::Column::Id.is_in(ids))
            .exec(self.conn())
            .await?;
        let endpoints: std::collections::BTreeSet<uuid::Uuid> =
            succeeded.iter().map(|(d, _)| d.endpoint_id.0).collect();
        // Touches (and locks) an endpoint's row only if a streak ends.
        webhook_endpoint::Entity::update_many()
            .col_expr(webhook_endpoint::Column::FailingSince, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(webhook_endpoint::Column::Id.is_in(endpoints))
            .filter(webhook_endpoint::Column::FailingSince.is_not_null())
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Records an attempt of `delivery` and what it leaves the delivery as.
    /// A success ends the endpoint's failing streak (without locking the
    /// endpoint unless it had one); a failure starts it (at the attempt) if
    /// none runs, and returns the endpoint as it is after, locked, for the
    /// caller to decide on (`None`: a success, or the endpoint is gone).
    pub async fn record_webhook_attempt(
        &self,
        delivery: &WebhookDelivery,
        attempt: &WebhookAttempt,
        result: AttemptResult,
    ) -> StoreResult<Option<WebhookEndpoint>> {
        let finished = storable(attempt.attempted_at);
        let (status, next, finished_at) = match result {
            AttemptResult::Succeeded => (DeliveryStatus::Succeeded, delivery.next_attempt_at, Some(finished)),
            AttemptResult::RetryAt(at) => (DeliveryStatus::Pending, storable(at), None),
            AttemptResult::Failed => (DeliveryStatus::Failed, delivery.next_attempt_at, Some(finished)),
        };
        let updated = webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::Status, Expr::value(status.as_str()))
            .col_expr(webhook_delivery::Column::Attempts, Expr::col(webhook_delivery::Column::Attempts).add(1))
            .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(next))
            .col_expr(webhook_delivery::Column::FinishedAt, Expr::value(finished_at))
            .col_expr(webhook_delivery::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(webhook_delivery::Column::Id.eq(delivery.id.0))
            .exec(self.conn())
            .await?;
        if updated.rows_affected == 0 {
            // Deleted meanwhile, with its endpoint: nothing to record.
            return Ok(None);
        }
        attempt_model(delivery, attempt).insert(self.conn()).await?;
        if result == AttemptResult::Succeeded {
            // Touches (and locks) the endpoint's row only if a streak ends.
            webhook_endpoint::Entity::update_many()
                .col_expr(webhook_endpoint::Column::FailingSince, Expr::value(Option::<DateTime<Utc>>::None))
                .filter(webhook_endpoint::Column::Id.eq(delivery.endpoint_id.0))
                .filter(webhook_endpoint::Column::FailingSince.is_not_null())
                .exec(self.conn())
                .await?;
            return Ok(None);
        }
        let select = webhook_endpoint::Entity::find_by_id(delivery.endpoint_id.0);
        let Some(endpoint) = self.locking(select).one(self.conn()).await?.map(endpoint_from) else {
            return Ok(None);
        };
        if endpoint.failing_since.is_some() {
            return Ok(Some(endpoint));
        }
        let endpoint = WebhookEndpoint { failing_since: Some(finished), ..endpoint };
        self.update_webhook_endpoint(&endpoint).await?;
        Ok(Some(endpoint))
    }
}

impl Store {
    /// A page of `tenant`'s endpoints in creation order, after `after`.
    pub async fn webhook_endpoints(
        &self,
        tenant: TenantId,
        after: Option<WebhookEndpointId>,
        limit: u64,
    ) -> StoreResult<(Vec<WebhookEndpoint>, bool)> {
        let mut select = webhook_endpoint::Entity::find().filter(webhook_endpoint::Column::TenantId.eq(tenant.0));
        if let Some(after) = after {
            select = select.filter(webhook_endpoint::Column::Id.gt(after.0));
        }
        let mut rows = select.order_by_asc(webhook_endpoint::Column::Id).limit(limit + 1).all(self.reader()).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        Ok((rows.into_iter().map(endpoint_from).collect(), more))
    }

    /// How many endpoints `tenant` has.
    pub async fn webhook_endpoint_count(&self, tenant: TenantId) -> StoreResult<u64> {
        let select = webhook_endpoint::Entity::find().filter(webhook_endpoint::Column::TenantId.eq(tenant.0));
        Ok(select.count(self.reader()).await?)
    }

    /// One endpoint of `tenant`.
    pub async fn webhook_endpoint(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> StoreResult<Option<WebhookEndpoint>> {
        let select = webhook_endpoint::Entity::find_by_id(id.0).filter(webhook_endpoint::Column::TenantId.eq(tenant.0));
        Ok(select.one(self.conn()).await?.map(endpoint_from))
    }

    /// A page of `tenant`'s deliveries, newest first, older than `after`,
    /// optionally of one endpoint and in some states.
    pub async fn webhook_deliveries(
        &self,
        tenant: TenantId,
        endpoint: Option<WebhookEndpointId>,
        statuses: &[DeliveryStatus],
        after: Option<WebhookDeliveryId>,
        limit: u64,
    ) -> StoreResult<DeliveryPage> {
        let mut select = webhook_delivery::Entity::find().filter(webhook_delivery::Column::TenantId.eq(tenant.0));
        if let Some(endpoint) = endpoint {
            select = select.filter(webhook_delivery::Column::EndpointId.eq(endpoint.0));
        }
        if !statuses.is_empty() {
            select = select.filter(webhook_delivery::Column::Status.is_in(statuses.iter().map(|s| s.as_str())));
        }
        if let Some(after) = after {
            select = select.filter(webhook_delivery::Column::Id.lt(after.0));
        }
        let mut rows = select.order_by_desc(webhook_delivery::Column::Id).limit(limit + 1).all(self.conn()).await?;
        let has_next_page = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.id).collect();
        let mut attempts: HashMap<uuid::Uuid, Vec<WebhookAttempt>> = HashMap::new();
        if !ids.is_empty() {
            let found = webhook_attempt::Entity::find()
                .filter(webhook_attempt::Column::DeliveryId.is_in(ids))
                .order_by_asc(webhook_attempt::Column::Id)
                .all(self.conn())
                .await?;
            for attempt in found {
                attempts.entry(attempt.delivery_id).or_default().push(attempt_from(attempt));
            }
        }
        let deliveries = rows
            .into_iter()
            .map(|row| {
                let tried = attempts.remove(&row.id).unwrap_or_default();
                delivery_from(row).map(|d| (d, tried))
            })
            .collect::<StoreResult<_>>()?;
        Ok(DeliveryPage { deliveries, has_next_page })
    }

    /// Claims up to `limit` pending deliveries due at `now` to enabled
    /// endpoints that nobody else holds, leased until `lease_until` (as
    /// [`Store::claim_due_events`] claims mail). A claimer that dies leaves
    /// its lease to run out; the delivery is then claimed again.
    pub async fn claim_due_webhook_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<DueDelivery>> {
        let backend = self.conn().get_database_backend();
        let sql = if backend == DbBackend::Postgres { POSTGRES_CLAIM } else { SQLITE_CLAIM };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let statement = Statement::from_sql_and_values(
            backend,
            sql,
            [storable(lease_until).into(), storable(now).into(), limit.into()],
        );
        let claimed = webhook_delivery::Entity::find().from_raw_sql(statement).all(self.conn()).await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let endpoint_ids: Vec<uuid::Uuid> = claimed.iter().map(|d| d.endpoint_id).collect();
        let endpoints: HashMap<uuid::Uuid, webhook_endpoint::Model> = webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::Id.is_in(endpoint_ids))
            .all(self.conn())
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        let mut due = Vec::with_capacity(claimed.len());
        for row in claimed {
            let Some(endpoint) = endpoints.get(&row.endpoint_id) else { continue };
            due.push(DueDelivery {
                url: endpoint.url.clone(),
                secrets: secrets_from(endpoint)?,
                delivery: delivery_from(row)?,
            });
        }
        due.sort_by_key(|d| (d.delivery.next_attempt_at, d.delivery.id));
        Ok(due)
    }

    /// Hands a claimed, unattempted delivery back (on shutdown).
    pub async fn release_webhook_delivery(&self, id: WebhookDeliveryId) -> StoreResult<()> {
        webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(webhook_delivery::Column::Id.eq(id.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Drops deliveries (with their attempts) of events older than `before`.
    pub async fn drop_webhook_deliveries_before(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let deleted = webhook_delivery::Entity::delete_many()
            .filter(webhook_delivery::Column::CreatedAt.lt(storable(before)))
            .exec(self.conn())
            .await?;
        Ok(deleted.rows_affected)
    }

    /// How many deliveries wait (pending), for operators.
    pub async fn pending_webhook_deliveries(&self) -> StoreResult<u64> {
        let select = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()));
        Ok(select.count(self.reader()).await?)
    }
}

const POSTGRES_CLAIM: &str = "UPDATE webhook_deliveries SET locked_until = $1 \
    WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
    WHERE d.status = 'pending' AND d.next_attempt_at <= $2 AND (d.locked_until IS NULL OR d.locked_until < $2) \
    AND e.enabled ORDER BY d.next_attempt_at, d.id LIMIT $3 FOR UPDATE OF d SKIP LOCKED) \
    RETURNING *";

const SQLITE_CLAIM: &str = "UPDATE webhook_deliveries SET locked_until = ?1 \
    WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
    WHERE d.status = 'pending' AND d.next_attempt_at <= ?2 AND (d.locked_until IS NULL OR d.locked_until < ?2) \
    AND e.enabled ORDER BY d.next_attempt_at, d.id LIMIT ?3) \
    RETURNING *";
