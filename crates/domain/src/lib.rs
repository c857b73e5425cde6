//! Latchkey's domain: the pure types and rules of multi-tenant API-key management.
//!
//! Nothing in this crate performs I/O or reads the clock (but for
//! [`clock::SystemClock`], the one reader of the system clock): the current
//! time is always a parameter, so callers (and tests) control it. Only this crate creates
//! or parses API-key secrets and admin tokens.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

pub mod admin_token;
pub mod clock;
pub mod description;
pub mod error;
pub mod hashing;
pub mod ids;
pub mod import;
pub mod key_policy;
pub mod key_signals;
pub mod lifecycle;
pub mod limits;
pub mod model;
pub mod names;
pub mod oidc;
pub mod policy;
pub mod restrictions;
pub mod secret;
mod string_enum;
pub mod tenancy;
pub mod usage;
pub mod webhook_events;
pub mod webhooks;

#[doc(hidden)]
pub use serde as __serde;

/// Where the API keys page lives, relative to the admin console's base URL
/// (owner mail links there; the server serves its reference page there).
pub const API_KEYS_PAGE_PATH: &str = "/settings/integrations/api";

/// Where the webhooks page lives, relative to the admin console's base URL.
pub const WEBHOOKS_PAGE_PATH: &str = "/settings/integrations/webhooks";

pub use clock::{Clock, SystemClock};
pub use description::{Description, DescriptionError, SearchTerm};
pub use error::DomainError;
pub use ids::{ApiKeyId, NoticeId, TenantId, UserId, WebhookDeliveryId, WebhookEndpointId};
pub use lifecycle::{ExpiryNotice, KeyStatus};
pub use model::{
    ApiKey, AuditAction, AuditChange, AuditEntry, Cloud, DisabledReason, EventDelivery, LeakReport, LeakResponse,
    Notice, NoticeKind, Role, Suspension, Tenant, User,
};
pub use secret::{ApiKeySecret, LookupId, MalformedKey, ParsedKey};
