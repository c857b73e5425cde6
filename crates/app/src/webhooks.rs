//! Webhooks, the use cases of an internal admin: a tenant's endpoints, their
//! signing secrets, the delivery log, redelivery and test events. Events
//! themselves are published by every change ([`crate::change::Change::publish`])
//! and sent by the dispatcher ([`crate::webhook_dispatch`]).

use std::sync::Arc;

use latchkey_domain::error::ViolationCode;
use latchkey_domain::webhook_events::{
    DeliveryStatus, EndpointUrl, EventTypes, MAX_ENDPOINTS_PER_TENANT, SECRET_OVERLAP, WebhookDelivery,
    WebhookEndpoint, WebhookEvent, checked_endpoint_description,
};
use latchkey_domain::webhooks::{AllowedHosts, SigningSecret};
use latchkey_domain::{AuditEntry, User, WebhookDeliveryId, WebhookEndpointId};
use latchkey_notify::webhooks::WebhookSender;
use latchkey_store::DeliveryPage;
use tokio::sync::Notify;

use crate::change::Change;
use crate::error::{AppError, AppResult};
use crate::keys::{FieldViolation, KeyAdmin, Outcome, Page};

/// How webhooks leave this process: the sender (which also checks where a
/// host resolves), the operator's allow list, and the dispatcher's wake-up.
#[derive(Debug)]
pub struct WebhookSetup {
    /// Sends attempts and checks targets.
    pub sender: Arc<dyn WebhookSender>,
    /// `LATCHKEY_WEBHOOK_ALLOW_HOSTS`.
    pub allowed: AllowedHosts,
    /// Woken after a change that queued deliveries.
    pub wake: Arc<Notify>,
}

/// Create an endpoint.
#[derive(Clone, Debug, Default)]
pub struct CreateEndpoint {
    /// Where events go.
    pub url: String,
    /// What it is, for admins.
    pub description: String,
    /// What it receives (empty: every type).
    pub event_types: Vec<String>,
}

/// Change an endpoint; what is none stays as it is.
#[derive(Clone, Debug, Default)]
pub struct UpdateEndpoint {
    /// The endpoint's id, as given.
    pub id: String,
    /// A new URL.
    pub url: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// New types (empty: every type).
    pub event_types: Option<Vec<String>>,
    /// Switch it on or off (on clears the reason Latchkey switched it off).
    pub enabled: Option<bool>,
}

/// An endpoint with the signing secret just made for it, shown once.
#[derive(Debug)]
pub struct EndpointWithSecret {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// The secret.
    pub secret: SigningSecret,
}

/// Which deliveries to list.
#[derive(Clone, Debug, Default)]
pub struct DeliveryQuery {
    /// One endpoint's (its id, as given), or every endpoint's.
    pub endpoint_id: Option<String>,
    /// In these states (empty: any).
    pub statuses: Vec<DeliveryStatus>,
    /// Page size.
    pub first: Option<i32>,
    /// Continue after this delivery's id.
    pub after: Option<String>,
}

fn endpoint_not_found() -> FieldViolation {
    FieldViolation::new("id", ViolationCode::NotFound, "Webhook endpoint not found.")
}

fn parsed_id<T: std::str::FromStr>(given: &str) -> Option<T> {
    given.trim().parse().ok()
}

/// An endpoint as the audit trail describes it.
fn described(endpoint: &WebhookEndpoint) -> String {
    let types = match endpoint.event_types.listed() {
        [] => "every event type".to_owned(),
        listed => listed.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
    };
    let state = if endpoint.enabled { "enabled" } else { "disabled" };
    format!("{} ({types}; {state})", endpoint.url)
}

impl KeyAdmin<'_> {
    fn setup(&self) -> &WebhookSetup {
        &self.app.webhooks
    }

    /// Checks a URL: its form, then where its host resolves now.
    async fn checked_url(&self, given: &str, violations: &mut Vec<FieldViolation>) -> Option<EndpointUrl> {
        let url = match EndpointUrl::parse(given, &self.setup().allowed) {
            Ok(url) => url,
            Err(violation) => {
                violations.push(FieldViolation { field: "url", violation });
                return None;
            }
        };
        if let Some(reason) = self.setup().sender.refusal(url.host()).await {
            violations.push(FieldViolation::new("url", ViolationCode::Invalid, reason));
            return None;
        }
        Some(url)
    }

    fn checked_types(given: &[String], violations: &mut Vec<FieldViolation>) -> Option<EventTypes> {
        EventTypes::parse(given)
            .map_err(|violation| violations.push(FieldViolation { field: "eventTypes", violation }))
            .ok()
    }

    fn checked_description(given: &str, violations: &mut Vec<FieldViolation>) -> Option<String> {
        checked_endpoint_description(given)
            .map_err(|violation| violations.push(FieldViolation { field: "description", violation }))
            .ok()
    }

    /// Creates an endpoint (at most [`MAX_ENDPOINTS_PER_TENANT`] per
    /// tenant) with a fresh signing secret, shown once; audited.
    pub async fn create_webhook_endpoint(&self, command: CreateEndpoint) -> AppResult<Outcome<EndpointWithSecret>> {
        let now = self.app.clock.now();
        let mut violations = Vec::new();
        let url = self.checked_url(&command.url, &mut violations).await;
        let description = Self::checked_description(&command.description, &mut violations);
        let event_types = Self::checked_types(&command.event_types, &mut violations);
        let (Some(url), Some(description), Some(event_types)) = (url, description, event_types) else {
            return Ok(Err(violations));
        };
        let secret = SigningSecret::generate().map_err(|e| AppError::internal(&e))?;
        let mut change = Change::begin(self.app).await?;
        if change.count_webhook_endpoints(self.actor.tenant_id).await? >= MAX_ENDPOINTS_PER_TENANT {
            return Ok(Err(vec![FieldViolation::new(
                "url",
                ViolationCode::LimitReached,
                format!("A tenant may have at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints; delete one first."),
            )]));
        }
        let endpoint = WebhookEndpoint {
            id: WebhookEndpointId::new_at(now),
            tenant_id: self.actor.tenant_id,
            url: url.as_str().to_owned(),
            description,
            event_types,
            enabled: true,
            created_at: now,
            disabled_reason: None,
            failing_since: None,
        };
        change.insert_webhook_endpoint(&endpoint, &secret).await?;
        change.audit(&audit_entry(self.actor, &endpoint, "none".into(), described(&endpoint), now)).await?;
        change.commit().await?;
        tracing::info!(endpoint = %endpoint.id, tenant = %endpoint.tenant_id, "webhook endpoint created");
        Ok(Ok(EndpointWithSecret { endpoint, secret }))
    }

    /// Changes an endpoint's URL, description, types or state; audited.
    pub async fn update_webhook_endpoint(&self, command: UpdateEndpoint) -> AppResult<Outcome<WebhookEndpoint>> {
        let now = self.app.clock.now();
        let mut violations = Vec::new();
        let id = parsed_id::<WebhookEndpointId>(&command.id);
        if id.is_none() {
            violations.push(endpoint_not_found());
        }
        let url = match &command.url {
            Some(given) => self.checked_url(given, &mut violations).await.map(Some),
            None => Some(None),
        };
        let description = match &command.description {
            Some(given) => Self::checked_description(given, &mut violations).map(Some),
            None => Some(None),
        };
        let event_types = match &command.event_types {
            Some(given) => Self::checked_types(given, &mut violations).map(Some),
            None => Some(None),
        };
        let (Some(id), Some(url), Some(description), Some(event_types)) = (id, url, description, event_types) else {
            return Ok(Err(violations));
        };
        let mut change = Change::begin(self.app).await?;
        let Some(before) = change.locked_webhook_endpoint(self.actor.tenant_id, id).await? else {
            return Ok(Err(vec![endpoint_not_found()]));
        };
        let mut after = before.clone();
        if let Some(url) = url {
            after.url = url.as_str().to_owned();
        }
        if let Some(description) = description {
            after.description = description;
        }
        if let Some(event_types) = event_types {
            after.event_types = event_types;
        }
        if let Some(enabled) = command.enabled {
            after.enabled = enabled;
            if enabled && !before.enabled {
                // Switched on again: a fresh start, no failing streak.
                after.disabled_reason = None;
                after.failing_since = None;
            }
        }
        if after == before {
            return Ok(Ok(before));
        }
        change.update_webhook_endpoint(&after).await?;
        change.audit(&audit_entry(self.actor, &after, described(&before), described(&after), now)).await?;
        let woken = after.enabled && !before.enabled;
        change.commit().await?;
        if woken {
            self.setup().wake.notify_one();
        }
        Ok(Ok(after))
    }

    /// Deletes an endpoint with its delivery log; audited.
    pub async fn delete_webhook_endpoint(&self, id: &str) -> AppResult<Outcome<WebhookEndpointId>> {
        let now = self.app.clock.now();
        let Some(id) = parsed_id::<WebhookEndpointId>(id) else { return Ok(Err(vec![endpoint_not_found()])) };
        let mut change = Change::begin(self.app).await?;
        let Some(endpoint) = change.locked_webhook_endpoint(self.actor.tenant_id, id).await? else {
            return Ok(Err(vec![endpoint_not_found()]));
        };
        change.delete_webhook_endpoint(self.actor.tenant_id, id).await?;
        change.audit(&audit_entry(self.actor, &endpoint, described(&endpoint), "deleted".into(), now)).await?;
        change.commit().await?;
        Ok(Ok(id))
    }

    /// Gives an endpoint a new signing secret, shown once; for
    /// [`SECRET_OVERLAP`] deliveries are signed with both; audited.
    pub async fn rotate_webhook_signing_secret(&self, id: &str) -> AppResult<Outcome<EndpointWithSecret>> {
        let now = self.app.clock.now();
        let Some(id) = parsed_id::<WebhookEndpointId>(id) else { return Ok(Err(vec![endpoint_not_found()])) };
        let secret = SigningSecret::generate().map_err(|e| AppError::internal(&e))?;
        let mut change = Change::begin(self.app).await?;
        let Some(endpoint) = change.locked_webhook_endpoint(self.actor.tenant_id, id).await? else {
            return Ok(Err(vec![endpoint_not_found()]));
        };
        change.rotate_webhook_secret(id, &secret, now + SECRET_OVERLAP).await?;
        let rotated = format!("{} (signing secret rotated; the previous one signs for 24 hours)", described(&endpoint));
        change.audit(&audit_entry(self.actor, &endpoint, described(&endpoint), rotated, now)).await?;
        change.commit().await?;
        Ok(Ok(EndpointWithSecret { endpoint, secret }))
    }

    /// A page of the tenant's endpoints, in creation order.
    pub async fn webhook_endpoints(&self, first: Option<i32>, after: Option<&str>) -> AppResult<Page<WebhookEndpoint>> {
        let limit = page_size(first)?;
        let after = match after {
            Some(cursor) => Some(
                parsed_id::<WebhookEndpointId>(cursor)
                    .ok_or_else(|| AppError::BadUserInput("`after` is not a cursor of this list.".into()))?,
            ),
            None => None,
        };
        let (items, has_next_page) = self.app.store.webhook_endpoints(self.actor.tenant_id, after, limit).await?;
        let total_count = self.app.store.webhook_endpoint_count(self.actor.tenant_id).await?;
        Ok(Page { items, has_next_page, total_count, count_capped: false })
    }

    /// A page of the tenant's deliveries, newest first, with their attempts.
    pub async fn webhook_deliveries(&self, query: DeliveryQuery) -> AppResult<DeliveryPage> {
        let limit = page_size(query.first)?;
        let endpoint = match &query.endpoint_id {
            Some(given) => {
                let id = parsed_id::<WebhookEndpointId>(given)
                    .ok_or_else(|| AppError::BadUserInput("`endpointId` is not a webhook endpoint id.".into()))?;
                if self.app.store.webhook_endpoint(self.actor.tenant_id, id).await?.is_none() {
                    return Err(AppError::BadUserInput("No such webhook endpoint in your tenant.".into()));
                }
                Some(id)
            }
            None => None,
        };
        let after = match &query.after {
            Some(cursor) => Some(
                parsed_id::<WebhookDeliveryId>(cursor)
                    .ok_or_else(|| AppError::BadUserInput("`after` is not a cursor of this list.".into()))?,
            ),
            None => None,
        };
        Ok(self.app.store.webhook_deliveries(self.actor.tenant_id, endpoint, &query.statuses, after, limit).await?)
    }

    /// Queues a delivery again, now, keeping its `webhook-id` (receivers
    /// that already have it can tell).
    pub async fn redeliver_webhook(&self, delivery_id: &str) -> AppResult<Outcome<WebhookDelivery>> {
        let not_found =
            || vec![FieldViolation::new("deliveryId", ViolationCode::NotFound, "Webhook delivery not found.")];
        let Some(id) = parsed_id::<WebhookDeliveryId>(delivery_id) else { return Ok(Err(not_found())) };
        let change = Change::begin(self.app).await?;
        let Some(delivery) = change.requeue_webhook_delivery(self.actor.tenant_id, id, self.app.clock.now()).await?
        else {
            return Ok(Err(not_found()));
        };
        change.commit().await?;
        self.setup().wake.notify_one();
        Ok(Ok(delivery))
    }

    /// Sends a `webhook.test` event to one endpoint (enabled or not: a
    /// disabled one keeps it until it is enabled).
    pub async fn send_test_webhook(&self, endpoint_id: &str) -> AppResult<Outcome<WebhookDelivery>> {
        let not_found =
            || vec![FieldViolation::new("endpointId", ViolationCode::NotFound, "Webhook endpoint not found.")];
        let Some(id) = parsed_id::<WebhookEndpointId>(endpoint_id) else { return Ok(Err(not_found())) };
        let now = self.app.clock.now();
        let change = Change::begin(self.app).await?;
        let Some(endpoint) = change.locked_webhook_endpoint(self.actor.tenant_id, id).await? else {
            return Ok(Err(not_found()));
        };
        let delivery = WebhookDelivery::of(&WebhookEvent::test(endpoint.tenant_id, endpoint.id, self.actor, now), id);
        change.insert_webhook_deliveries(std::slice::from_ref(&delivery)).await?;
        change.commit().await?;
        self.setup().wake.notify_one();
        Ok(Ok(delivery))
    }
}

fn page_size(first: Option<i32>) -> AppResult<u64> {
    let first = first.unwrap_or(crate::keys::DEFAULT_PAGE_SIZE);
    if !(1..=crate::keys::MAX_PAGE_SIZE).contains(&first) {
        return Err(AppError::BadUserInput(format!("`first` must be between 1 and {}.", crate::keys::MAX_PAGE_SIZE)));
    }
    Ok(first as u64)
}

fn audit_entry(
    actor: &User,
    endpoint: &WebhookEndpoint,
    before: String,
    after: String,
    at: chrono::DateTime<chrono::Utc>,
) -> AuditEntry {
    AuditEntry::setting_changed(actor, &format!("webhook endpoint {}", endpoint.id), before, after, at)
}
