//! Webhooks in GraphQL: a tenant's endpoints, the event types, the delivery
//! log, and the mutations that manage them (internal admins only, through
//! [`latchkey_app::App::key_admin`]).

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use latchkey_app::webhooks::{CreateEndpoint, DeliveryQuery, EndpointWithSecret, UpdateEndpoint};
use latchkey_domain::webhook_events::{
    WebhookAttempt as Attempt, WebhookDelivery as Delivery, WebhookEndpoint as Endpoint,
};
use latchkey_domain::webhooks::WebhookEventType;

use crate::context::context;
use crate::error::{ApiResult, OrGraphql};
use crate::types::{PageInfo, UserError, user_errors};

/// Where events of a tenant are sent. Its signing secret is shown only when
/// it is made (`createWebhookEndpoint`, `rotateWebhookSigningSecret`).
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookEndpoint {
    /// Its id.
    pub id: ID,
    /// Where events are POSTed.
    pub url: String,
    /// What it is for.
    pub description: String,
    /// The event types it receives; empty for every type.
    pub event_types: Vec<String>,
    /// Whether events are sent to it.
    pub enabled: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Why Latchkey disabled it (after 5 days of failed deliveries); null
    /// when enabled or disabled by an admin.
    pub disabled_reason: Option<String>,
}

impl From<Endpoint> for WebhookEndpoint {
    fn from(e: Endpoint) -> Self {
        WebhookEndpoint {
            id: ID(e.id.to_string()),
            url: e.url,
            description: e.description,
            event_types: e.event_types.listed().iter().map(|t| t.as_str().to_owned()).collect(),
            enabled: e.enabled,
            created_at: e.created_at,
            disabled_reason: e.disabled_reason,
        }
    }
}

/// An event type an endpoint may receive.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookEventTypeInfo {
    /// Its name, as in `eventTypes` and a payload's `type` (`api_key.rotated`).
    pub name: String,
    /// What it means.
    pub description: String,
}

/// Where a delivery stands.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(name = "WebhookDeliveryStatus", remote = "latchkey_domain::webhook_events::DeliveryStatus")]
pub enum GqlDeliveryStatus {
    /// Not accepted yet; it will be tried again (or for the first time).
    Pending,
    /// A receiver answered 2xx.
    Succeeded,
    /// Every retry failed (about 3 days of them); `redeliverWebhook` tries again.
    Failed,
}

/// One attempt of a delivery.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookAttempt {
    /// When it was made.
    pub attempted_at: DateTime<Utc>,
    /// The receiver's HTTP status; null when it did not answer.
    pub http_status: Option<i32>,
    /// How long it took, in milliseconds.
    pub duration_ms: i32,
    /// The first 1 KB of the response body, as text.
    pub response_body: String,
    /// Why it failed beyond the status (timeout, refused address, redirect,
    /// response cut at 1 MB); null otherwise.
    pub error: Option<String>,
}

impl From<Attempt> for WebhookAttempt {
    fn from(a: Attempt) -> Self {
        WebhookAttempt {
            attempted_at: a.attempted_at,
            http_status: a.http_status.map(i32::from),
            duration_ms: i32::try_from(a.duration_ms).unwrap_or(i32::MAX),
            response_body: a.response_body,
            error: a.error,
        }
    }
}

/// One event's delivery to one endpoint; kept 30 days.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookDelivery {
    /// Its id; the `webhook-id` header is `msg_` and this id without dashes.
    pub id: ID,
    /// The `webhook-id` header it is sent with, the same on every attempt.
    pub message_id: String,
    /// The endpoint.
    pub endpoint_id: ID,
    /// The event (shared by its deliveries to every endpoint).
    pub event_id: ID,
    /// The event's type.
    pub event_type: String,
    /// Where it stands.
    pub status: GqlDeliveryStatus,
    /// The JSON body sent.
    pub payload: String,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Its attempts, oldest first.
    pub attempts: Vec<WebhookAttempt>,
}

impl WebhookDelivery {
    fn of(d: Delivery, attempts: Vec<Attempt>) -> Self {
        let pending = d.status == latchkey_domain::webhook_events::DeliveryStatus::Pending;
        WebhookDelivery {
            id: ID(d.id.to_string()),
            message_id: d.message_id(),
            endpoint_id: ID(d.endpoint_id.to_string()),
            event_id: ID(d.event_id.to_string()),
            event_type: d.event_type.as_str().to_owned(),
            status: d.status.into(),
            payload: d.payload,
            created_at: d.created_at,
            next_attempt_at: pending.then_some(d.next_attempt_at),
            attempts: attempts.into_iter().map(Into::into).collect(),
        }
    }
}

/// A page of endpoints, in creation order.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookEndpointConnection {
    /// The endpoints.
    pub nodes: Vec<WebhookEndpoint>,
    /// Paging (`endCursor` continues after the last one).
    pub page_info: PageInfo,
    /// Endpoints of the tenant (at most 20).
    pub total_count: i32,
}

/// A page of deliveries, newest first.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookDeliveryConnection {
    /// The deliveries.
    pub nodes: Vec<WebhookDelivery>,
    /// Paging (`endCursor` continues with older deliveries).
    pub page_info: PageInfo,
}

fn page_info(has_next_page: bool, after: bool, first: Option<String>, last: Option<String>) -> PageInfo {
    PageInfo { has_next_page, has_previous_page: after, start_cursor: first, end_cursor: last }
}

/// Input of `createWebhookEndpoint`.
#[derive(InputObject, Debug)]
pub struct CreateWebhookEndpointInput {
    /// `https` URL to a public address (or a host the operator allows).
    pub url: String,
    /// What it is for (up to 200 characters).
    #[graphql(default)]
    pub description: String,
    /// Types to receive (`webhookEventTypes`); empty or omitted for every type.
    #[graphql(default)]
    pub event_types: Vec<String>,
}

/// Input of `updateWebhookEndpoint`: what is omitted stays as it is.
#[derive(InputObject, Debug)]
pub struct UpdateWebhookEndpointInput {
    /// The endpoint.
    pub id: ID,
    /// A new URL.
    pub url: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// New types (empty for every type).
    pub event_types: Option<Vec<String>>,
    /// Switch it on or off. On again after Latchkey disabled it: the reason is
    /// cleared and pending deliveries go out.
    pub enabled: Option<bool>,
}

/// Input naming an endpoint.
#[derive(InputObject, Debug)]
pub struct WebhookEndpointIdInput {
    /// The endpoint.
    pub id: ID,
}

/// Input of `sendTestWebhook`.
#[derive(InputObject, Debug)]
pub struct SendTestWebhookInput {
    /// The endpoint to send a `webhook.test` event to.
    pub endpoint_id: ID,
}

/// Input of `redeliverWebhook`.
#[derive(InputObject, Debug)]
pub struct RedeliverWebhookInput {
    /// The delivery to send again (same `webhook-id`).
    pub delivery_id: ID,
}

/// Result of `createWebhookEndpoint` and `rotateWebhookSigningSecret`.
#[derive(SimpleObject, Debug, Default)]
pub struct WebhookEndpointSecretPayload {
    /// The endpoint; null when refused.
    pub endpoint: Option<WebhookEndpoint>,
    /// The signing secret (`whsec_…`), shown this once: verify
    /// `webhook-signature` with it (any Standard Webhooks library).
    pub signing_secret: Option<String>,
    /// Why the input was refused.
    pub user_errors: Vec<UserError>,
}

impl WebhookEndpointSecretPayload {
    fn of(outcome: Result<EndpointWithSecret, Vec<latchkey_app::FieldViolation>>) -> Self {
        match outcome {
            Ok(made) => WebhookEndpointSecretPayload {
                endpoint: Some(made.endpoint.into()),
                signing_secret: Some(made.secret.expose().to_owned()),
                user_errors: vec![],
            },
            Err(violations) => {
                WebhookEndpointSecretPayload { user_errors: user_errors(violations), ..Default::default() }
            }
        }
    }
}

/// Result of `updateWebhookEndpoint`.
#[derive(SimpleObject, Debug, Default)]
pub struct UpdateWebhookEndpointPayload {
    /// The endpoint as it is now; null when refused.
    pub endpoint: Option<WebhookEndpoint>,
    /// Why the input was refused.
    pub user_errors: Vec<UserError>,
}

/// Result of `deleteWebhookEndpoint`.
#[derive(SimpleObject, Debug, Default)]
pub struct DeleteWebhookEndpointPayload {
    /// The id of the endpoint deleted; null when refused.
    pub deleted_endpoint_id: Option<ID>,
    /// Why the input was refused.
    pub user_errors: Vec<UserError>,
}

/// Result of `redeliverWebhook` and `sendTestWebhook`.
#[derive(SimpleObject, Debug, Default)]
pub struct WebhookDeliveryPayload {
    /// The delivery queued; null when refused.
    pub delivery: Option<WebhookDelivery>,
    /// Why the input was refused.
    pub user_errors: Vec<UserError>,
}

impl WebhookDeliveryPayload {
    fn of(outcome: Result<Delivery, Vec<latchkey_app::FieldViolation>>) -> Self {
        match outcome {
            Ok(d) => WebhookDeliveryPayload { delivery: Some(WebhookDelivery::of(d, vec![])), user_errors: vec![] },
            Err(violations) => WebhookDeliveryPayload { user_errors: user_errors(violations), ..Default::default() },
        }
    }
}

/// Webhook queries.
#[derive(Debug, Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// Your tenant's webhook endpoints, in creation order (internal admins).
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<WebhookEndpointConnection> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let page = admin.webhook_endpoints(Some(first.unwrap_or(20)), after.as_deref()).await.gql()?;
        let nodes: Vec<WebhookEndpoint> = page.items.into_iter().map(Into::into).collect();
        let cursor = |e: Option<&WebhookEndpoint>| e.map(|e| e.id.to_string());
        Ok(WebhookEndpointConnection {
            page_info: page_info(page.has_next_page, after.is_some(), cursor(nodes.first()), cursor(nodes.last())),
            total_count: i32::try_from(page.total_count).unwrap_or(i32::MAX),
            nodes,
        })
    }

    /// The event types an endpoint may receive, with what each means.
    async fn webhook_event_types(&self) -> Vec<WebhookEventTypeInfo> {
        WebhookEventType::ALL
            .iter()
            .map(|t| WebhookEventTypeInfo { name: t.as_str().to_owned(), description: t.description().to_owned() })
            .collect()
    }

    /// The delivery log, newest first, kept 30 days: every event sent to
    /// `endpointId` (or to every endpoint), optionally in some states.
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: Option<ID>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        after: Option<String>,
        status: Option<Vec<GqlDeliveryStatus>>,
    ) -> ApiResult<WebhookDeliveryConnection> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let query = DeliveryQuery {
            endpoint_id: endpoint_id.map(|id| id.0),
            statuses: status.unwrap_or_default().into_iter().map(Into::into).collect(),
            first: Some(first.unwrap_or(20)),
            after: after.clone(),
        };
        let page = admin.webhook_deliveries(query).await.gql()?;
        let nodes: Vec<WebhookDelivery> =
            page.deliveries.into_iter().map(|(d, attempts)| WebhookDelivery::of(d, attempts)).collect();
        let cursor = |d: Option<&WebhookDelivery>| d.map(|d| d.id.to_string());
        Ok(WebhookDeliveryConnection {
            page_info: page_info(page.has_next_page, after.is_some(), cursor(nodes.first()), cursor(nodes.last())),
            nodes,
        })
    }
}

/// Webhook mutations. Every one answers `userErrors` on bad input and then
/// changes nothing; endpoint changes are in the audit trail.
#[derive(Debug, Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Creates an endpoint (at most 20 per tenant). Its signing secret is in
    /// the payload, once. The URL must be `https` and resolve to public
    /// addresses only.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> ApiResult<WebhookEndpointSecretPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let command = CreateEndpoint { url: input.url, description: input.description, event_types: input.event_types };
        Ok(WebhookEndpointSecretPayload::of(admin.create_webhook_endpoint(command).await.gql()?))
    }

    /// Changes an endpoint's URL, description, types, or switches it on or off.
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: UpdateWebhookEndpointInput,
    ) -> ApiResult<UpdateWebhookEndpointPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let command = UpdateEndpoint {
            id: input.id.0,
            url: input.url,
            description: input.description,
            event_types: input.event_types,
            enabled: input.enabled,
        };
        Ok(match admin.update_webhook_endpoint(command).await.gql()? {
            Ok(endpoint) => UpdateWebhookEndpointPayload { endpoint: Some(endpoint.into()), user_errors: vec![] },
            Err(violations) => {
                UpdateWebhookEndpointPayload { user_errors: user_errors(violations), ..Default::default() }
            }
        })
    }

    /// Deletes an endpoint and its delivery log.
    async fn delete_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: WebhookEndpointIdInput,
    ) -> ApiResult<DeleteWebhookEndpointPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(match admin.delete_webhook_endpoint(&input.id.0).await.gql()? {
            Ok(id) => {
                DeleteWebhookEndpointPayload { deleted_endpoint_id: Some(ID(id.to_string())), user_errors: vec![] }
            }
            Err(violations) => {
                DeleteWebhookEndpointPayload { user_errors: user_errors(violations), ..Default::default() }
            }
        })
    }

    /// Gives an endpoint a new signing secret, in the payload once. For 24
    /// hours deliveries carry two signatures, the new secret's and the old one's.
    async fn rotate_webhook_signing_secret(
        &self,
        ctx: &Context<'_>,
        input: WebhookEndpointIdInput,
    ) -> ApiResult<WebhookEndpointSecretPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(WebhookEndpointSecretPayload::of(admin.rotate_webhook_signing_secret(&input.id.0).await.gql()?))
    }

    /// Sends a delivery again now, with the same `webhook-id` and a fresh
    /// retry schedule.
    async fn redeliver_webhook(
        &self,
        ctx: &Context<'_>,
        input: RedeliverWebhookInput,
    ) -> ApiResult<WebhookDeliveryPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(WebhookDeliveryPayload::of(admin.redeliver_webhook(&input.delivery_id.0).await.gql()?))
    }

    /// Sends a `webhook.test` event to an endpoint.
    async fn send_test_webhook(
        &self,
        ctx: &Context<'_>,
        input: SendTestWebhookInput,
    ) -> ApiResult<WebhookDeliveryPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(WebhookDeliveryPayload::of(admin.send_test_webhook(&input.endpoint_id.0).await.gql()?))
    }
}
