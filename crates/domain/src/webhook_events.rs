//! A tenant's webhook endpoints and the events sent to them: which URLs an
//! endpoint may have, which types it receives, the payload of each event
//! (never a secret, a hash or an admin's email), and what a delivery
//! records. The protocol itself (secrets, signatures, retry schedule, the
//! address rule) is in [`crate::webhooks`].

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::error::{Violation, ViolationCode};
use crate::ids::{TenantId, WebhookDeliveryId, WebhookEndpointId};
use crate::lifecycle::SCIM_ACTOR_ID;
use crate::model::{ApiKey, Role, User};
use crate::webhooks::{AllowedHosts, SigningSecret, WebhookEventType, is_forbidden_address};

/// Endpoints a tenant may have.
pub const MAX_ENDPOINTS_PER_TENANT: u64 = 20;
/// Longest endpoint URL.
pub const MAX_URL_LENGTH: usize = 2048;
/// Longest endpoint description.
pub const MAX_DESCRIPTION_LENGTH: usize = 200;
/// How long the previous signing secret still signs after a rotation.
pub const SECRET_OVERLAP: Duration = Duration::hours(24);
/// How long a receiver has to answer one attempt.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// Most of a response read (the rest is cut).
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// How much of a response body an attempt keeps.
pub const KEPT_RESPONSE_BYTES: usize = 1024;
/// How long deliveries and their attempts are kept.
pub const DELIVERY_RETENTION: Duration = Duration::days(30);

/// An endpoint's URL, checked: `https` (or `http` to an allowed host), a
/// host, no credentials, and no internal address literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointUrl {
    url: String,
    host: String,
}

impl EndpointUrl {
    /// Checks `given` against the rules and `allowed` (the operator's list).
    /// The host's resolved addresses are checked separately, by the caller
    /// who resolves it ([`crate::webhooks::refused_addresses`]).
    pub fn parse(given: &str, allowed: &AllowedHosts) -> Result<Self, Violation> {
        let given = given.trim();
        if given.is_empty() {
            return Err(Violation::new(ViolationCode::Blank, "Enter the URL Latchkey should send events to."));
        }
        if given.len() > MAX_URL_LENGTH {
            return Err(Violation::new(
                ViolationCode::TooLong,
                format!("The URL is longer than {MAX_URL_LENGTH} characters."),
            ));
        }
        let invalid = |message: &str| Violation::new(ViolationCode::Invalid, message);
        let url = url::Url::parse(given).map_err(|_| invalid("This is not a valid URL."))?;
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(invalid("The URL has no host.")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "The URL may not carry a user name or password; sign requests with the secret instead.",
            ));
        }
        if url.fragment().is_some() {
            return Err(invalid("The URL may not have a fragment (#…)."));
        }
        let allowed_host = allowed.allows_host(&host);
        match url.scheme() {
            "https" => {}
            "http" if allowed_host => {}
            "http" => return Err(invalid("The URL must use https.")),
            _ => return Err(invalid("The URL must be an https URL.")),
        }
        if let Ok(ip) = host.parse::<std::net::IpAddr>()
            && is_forbidden_address(ip)
            && !allowed_host
        {
            return Err(invalid("The URL points to an internal address; webhooks go only to public addresses."));
        }
        Ok(EndpointUrl { url: url.to_string(), host })
    }

    /// The URL, normalised.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// Its host (a name, or an address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// The types an endpoint receives; none listed means every type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventTypes(Vec<WebhookEventType>);

impl EventTypes {
    /// The named types, without repeats; an unknown name is refused, naming it.
    pub fn parse(names: &[String]) -> Result<Self, Violation> {
        let mut types = Vec::new();
        for name in names {
            let Some(t) = WebhookEventType::parse(name.trim()) else {
                let shown: String = name.chars().take(64).collect();
                return Err(Violation::new(
                    ViolationCode::Invalid,
                    format!("{shown:?} is not an event type; `webhookEventTypes` lists them."),
                ));
            };
            if !types.contains(&t) {
                types.push(t);
            }
        }
        types.sort();
        Ok(EventTypes(types))
    }

    /// As stored: comma-separated, empty for every type. Unknown names
    /// (from a newer version) are skipped.
    pub fn from_stored(stored: &str) -> Self {
        EventTypes(stored.split(',').filter_map(WebhookEventType::parse).collect())
    }

    /// For storage.
    pub fn stored(&self) -> String {
        self.0.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",")
    }

    /// The listed types (empty: every type).
    pub fn listed(&self) -> &[WebhookEventType] {
        &self.0
    }

    /// Whether an endpoint with these types receives `t`. Test events go
    /// only where they are sent, never by subscription.
    pub fn receives(&self, t: WebhookEventType) -> bool {
        t != WebhookEventType::Test && (self.0.is_empty() || self.0.contains(&t))
    }
}

/// A tenant's webhook endpoint, without its secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// Its id.
    pub id: WebhookEndpointId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Where events go.
    pub url: String,
    /// What it is, for admins.
    pub description: String,
    /// What it receives.
    pub event_types: EventTypes,
    /// Whether events are sent to it.
    pub enabled: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Why Latchkey disabled it (none when enabled, or disabled by an admin).
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed (none after a success).
    pub failing_since: Option<DateTime<Utc>>,
}

impl WebhookEndpoint {
    /// Whether a failure at `now` disables it: it has failed without a
    /// success for [`crate::webhooks::DISABLE_AFTER`].
    pub fn fails_too_long(&self, now: DateTime<Utc>) -> bool {
        self.enabled && self.failing_since.is_some_and(|since| now - since >= crate::webhooks::DISABLE_AFTER)
    }
}

/// An endpoint's signing secrets: the current one and, for a day after a
/// rotation, the previous one.
#[derive(Clone, Debug)]
pub struct EndpointSecrets {
    /// Signs every delivery.
    pub current: SigningSecret,
    /// Signs too, until the time given.
    pub previous: Option<(SigningSecret, DateTime<Utc>)>,
}

impl EndpointSecrets {
    /// The secrets that sign at `now`, current first.
    pub fn signing(&self, now: DateTime<Utc>) -> Vec<&SigningSecret> {
        let mut secrets = vec![&self.current];
        if let Some((previous, until)) = &self.previous
            && now < *until
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// A description of an endpoint, checked (may be empty; one line).
pub fn checked_endpoint_description(given: &str) -> Result<String, Violation> {
    let given = given.trim();
    if given.chars().count() > MAX_DESCRIPTION_LENGTH {
        return Err(Violation::new(
            ViolationCode::TooLong,
            format!("The description is longer than {MAX_DESCRIPTION_LENGTH} characters."),
        ));
    }
    if given.chars().any(char::is_control) {
        return Err(Violation::new(ViolationCode::Invalid, "The description may not contain control characters."));
    }
    Ok(given.to_owned())
}

crate::string_enum! {
    /// Where a delivery stands.
    pub enum DeliveryStatus {
        /// Not yet accepted; more attempts will come.
        Pending = "pending",
        /// A receiver answered 2xx.
        Succeeded = "succeeded",
        /// Its retries are spent.
        Failed = "failed",
    }
}

crate::string_enum! {
    /// Who caused an event.
    pub enum ActorKind {
        /// An admin, signed in.
        Admin = "ADMIN",
        /// Latchkey itself (expiry, credits, leak reports from scanners).
        System = "SYSTEM",
        /// The identity provider, through SCIM.
        Scim = "SCIM",
        /// An integration, with its API key.
        Key = "KEY",
    }
}

impl ActorKind {
    /// The kind of `actor` as use cases name actors: the nil id is Latchkey,
    /// [`SCIM_ACTOR_ID`] the SCIM provider, an integration user a key.
    pub fn of(actor: &User) -> Self {
        if actor.id.0.is_nil() {
            ActorKind::System
        } else if actor.id == SCIM_ACTOR_ID {
            ActorKind::Scim
        } else if actor.role == Role::IntegrationUser {
            ActorKind::Key
        } else {
            ActorKind::Admin
        }
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn actor_json(actor: &User) -> Value {
    let kind = ActorKind::of(actor);
    let id = matches!(kind, ActorKind::Admin | ActorKind::Key).then(|| actor.id.to_string());
    json!({"kind": kind.as_str(), "id": id, "name": actor.name})
}

fn user_json(user: &User) -> Value {
    json!({"id": user.id.to_string(), "name": user.name})
}

/// A key as events describe it: what the key table shows, nothing secret.
pub fn key_json(key: &ApiKey, owner: &User, now: DateTime<Utc>) -> Value {
    json!({
        "id": key.id.to_string(),
        "lastFour": key.last_four,
        "description": key.description,
        "status": key.status(owner, now).as_str().to_ascii_uppercase(),
        "owner": user_json(owner),
        "createdAt": timestamp(key.created_at),
        "expiresAt": key.expires_at.map(timestamp),
        "lastUsedAt": key.last_used_at.map(timestamp),
    })
}

/// One event, ready to be delivered to each endpoint that receives its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEvent {
    /// Its id, shared by its deliveries to every endpoint.
    pub id: uuid::Uuid,
    /// Its type.
    pub event_type: WebhookEventType,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The body every endpoint receives (JSON).
    pub payload: String,
}

impl WebhookEvent {
    fn new(
        event_type: WebhookEventType,
        tenant_id: TenantId,
        actor: &User,
        at: DateTime<Utc>,
        data: Map<String, Value>,
    ) -> Self {
        let mut all = Map::new();
        all.insert("tenantId".into(), Value::String(tenant_id.to_string()));
        all.insert("actor".into(), actor_json(actor));
        all.extend(data);
        let payload = json!({"type": event_type.as_str(), "timestamp": timestamp(at), "data": all}).to_string();
        WebhookEvent { id: crate::ids::time_ordered_uuid(at), event_type, tenant_id, occurred_at: at, payload }
    }

    /// An event of `event_type` about `key` (owned by `owner`, as it is after
    /// the change), caused by `actor` at `at`, with the type's own fields.
    pub fn about_key(
        event_type: WebhookEventType,
        key: &ApiKey,
        owner: &User,
        actor: &User,
        at: DateTime<Utc>,
        fields: Map<String, Value>,
    ) -> Self {
        let mut data = Map::new();
        data.insert("apiKey".into(), key_json(key, owner, at));
        data.extend(fields);
        Self::new(event_type, key.tenant_id, actor, at, data)
    }

    /// `user.deactivated` or `user.reactivated` of `user`, with the keys it owns.
    pub fn about_user(
        event_type: WebhookEventType,
        user: &User,
        keys: &[ApiKey],
        actor: &User,
        at: DateTime<Utc>,
    ) -> Self {
        let mut data = Map::new();
        data.insert(
            "user".into(),
            json!({"id": user.id.to_string(), "name": user.name, "role": user.role.as_str(), "active": user.active}),
        );
        data.insert("apiKeyIds".into(), keys.iter().map(|k| Value::String(k.id.to_string())).collect());
        Self::new(event_type, user.tenant_id, actor, at, data)
    }

    /// A `webhook.test` event, sent by `actor` to one endpoint.
    pub fn test(tenant_id: TenantId, endpoint: WebhookEndpointId, actor: &User, at: DateTime<Utc>) -> Self {
        let mut data = Map::new();
        data.insert("endpointId".into(), Value::String(endpoint.to_string()));
        data.insert("message".into(), Value::String("This is a test event from Latchkey.".into()));
        Self::new(WebhookEventType::Test, tenant_id, actor, at, data)
    }
}

/// A type-specific field of an event, for [`WebhookEvent::about_key`].
pub fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// An owner (or a former owner) in a payload: id and name, never the email.
pub fn user_field(user: &User) -> Value {
    user_json(user)
}

/// A time in a payload (RFC 3339, UTC, milliseconds).
pub fn time_field(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |at| Value::String(timestamp(at)))
}

/// One event's delivery to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Its id: `webhook-id` is `msg_` and this, the same on every attempt.
    pub id: WebhookDeliveryId,
    /// The endpoint.
    pub endpoint_id: WebhookEndpointId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The event (shared by its deliveries to every endpoint).
    pub event_id: uuid::Uuid,
    /// The event's type.
    pub event_type: WebhookEventType,
    /// The body sent.
    pub payload: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made (or claimed).
    pub attempts: i32,
    /// When the next attempt is due (while pending).
    pub next_attempt_at: DateTime<Utc>,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// When it succeeded or failed for good.
    pub finished_at: Option<DateTime<Utc>>,
}

impl WebhookDelivery {
    /// The delivery of `event` to `endpoint`, due at once.
    pub fn of(event: &WebhookEvent, endpoint: WebhookEndpointId) -> Self {
        WebhookDelivery {
            id: WebhookDeliveryId::new_at(event.occurred_at),
            endpoint_id: endpoint,
            tenant_id: event.tenant_id,
            event_id: event.id,
            event_type: event.event_type,
            payload: event.payload.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: event.occurred_at,
            created_at: event.occurred_at,
            finished_at: None,
        }
    }

    /// The `webhook-id` header.
    pub fn message_id(&self) -> String {
        format!("msg_{}", self.id.0.simple())
    }
}

/// One attempt of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookAttempt {
    /// When it started.
    pub attempted_at: DateTime<Utc>,
    /// The receiver's HTTP status (none: no answer).
    pub http_status: Option<u16>,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// The first [`KEPT_RESPONSE_BYTES`] of the response body, as text.
    pub response_body: String,
    /// Why it failed, when it did (timeout, refused address, redirect, …).
    pub error: Option<String>,
}

impl WebhookAttempt {
    /// Whether the receiver accepted the event (2xx).
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.http_status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The kept part of a response body: its first [`KEPT_RESPONSE_BYTES`], as
/// text (invalid UTF-8 replaced), cut on a character boundary.
pub fn kept_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(KEPT_RESPONSE_BYTES)]);
    let mut kept = text.into_owned();
    while kept.len() > KEPT_RESPONSE_BYTES {
        kept.pop();
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;
    use crate::webhooks::AllowedHosts;

    #[test]
    fn urls_must_be_https_to_public_hosts_unless_allowed() {
        let none = AllowedHosts::default();
        assert_eq!(EndpointUrl::parse(" https://hooks.example.com/in ", &none).unwrap().host(), "hooks.example.com");
        for bad in [
            "",
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://169.254.169.254/latest",
            "https://10.1.2.3/",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#x",
            "not a url",
        ] {
            assert!(EndpointUrl::parse(bad, &none).is_err(), "{bad}");
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(10_000));
        assert_eq!(EndpointUrl::parse(&long, &none).unwrap_err().code, ViolationCode::TooLong);
        let allowed = AllowedHosts::parse("127.0.0.1,receiver.internal").unwrap();
        assert!(EndpointUrl::parse("http://127.0.0.1:8080/hook", &allowed).is_ok());
        assert!(EndpointUrl::parse("http://receiver.internal/hook", &allowed).is_ok());
        assert!(EndpointUrl::parse("http://10.0.0.1/hook", &allowed).is_err());
    }

    #[test]
    fn event_types_parse_strictly_and_empty_means_all_but_test() {
        let some =
            EventTypes::parse(&["api_key.rotated".into(), "api_key.created".into(), "api_key.rotated".into()]).unwrap();
        assert_eq!(some.stored(), "api_key.created,api_key.rotated");
        assert_eq!(EventTypes::from_stored(&some.stored()), some);
        assert!(some.receives(WebhookEventType::KeyRotated) && !some.receives(WebhookEventType::KeyDeleted));
        let all = EventTypes::parse(&[]).unwrap();
        assert!(all.receives(WebhookEventType::UserDeactivated) && !all.receives(WebhookEventType::Test));
        assert!(EventTypes::parse(&["api_key.exploded".into()]).is_err());
    }

    #[test]
    fn payloads_carry_no_secret_and_no_email() {
        let at = chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        let tenant = TenantId(uuid::Uuid::from_u128(7));
        let owner = User {
            id: UserId(uuid::Uuid::from_u128(8)),
            tenant_id: tenant,
            email: "owner@example.com".into(),
            name: "Ada".into(),
            role: Role::InternalAdmin,
            active: true,
        };
        let event = WebhookEvent::about_user(WebhookEventType::UserDeactivated, &owner, &[], &owner, at);
        let body: Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(body["type"], "user.deactivated");
        assert_eq!(body["timestamp"], "2026-01-01T00:00:00.000Z");
        assert_eq!(body["data"]["actor"]["kind"], "ADMIN");
        assert!(!event.payload.contains("example.com"));
        let system = crate::lifecycle::system_actor(tenant);
        assert_eq!(ActorKind::of(&system), ActorKind::System);
        assert_eq!(ActorKind::of(&crate::lifecycle::scim_actor(tenant, "abcd")), ActorKind::Scim);
    }

    #[test]
    fn kept_bodies_are_cut_on_a_character_boundary() {
        assert_eq!(kept_body(b"ok"), "ok");
        let long = "é".repeat(1000);
        let kept = kept_body(long.as_bytes());
        assert!(kept.len() <= KEPT_RESPONSE_BYTES && kept.chars().all(|c| c == 'é' || c == '\u{fffd}'));
    }
}
