//! Latchkey's domain: the pure types and rules of multi-tenant API-key management.
//!
//! Nothing in this crate performs I/O or reads the clock: the current time is
//! always a parameter, so callers (and tests) control it. Only this crate creates
//! or parses API-key secrets and admin tokens.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

pub mod admin_token;
pub mod description;
pub mod error;
pub mod hashing;
pub mod ids;
pub mod model;
pub mod policy;
pub mod secret;

pub use description::{Description, DescriptionError, SearchTerm};
pub use error::DomainError;
pub use ids::{ApiKeyId, KeyEventId, TenantId, UserId};
pub use model::{ApiKey, AuditAction, AuditEntry, Cloud, KeyEvent, KeyEventKind, Role, Tenant, User};
pub use secret::{ApiKeySecret, LookupId, MalformedKey, ParsedKey};
