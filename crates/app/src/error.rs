//! The error policy of every front end: one error type with stable codes.
//! Refusals carry a message fit for the caller; internal failures are logged
//! in full with the request's id and reach the caller only as a generic
//! message and that id, so support can find the log line.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use latchkey_domain::DomainError;
use latchkey_store::StoreError;
use rand::TryRng;

/// The id of one failure, shown to the caller with an internal error and
/// written in the log line of that failure, so support can find it. Minted
/// only when something fails: requests that succeed pay nothing for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh id (16 hex digits): a random prefix drawn once per process, so
    /// replicas do not collide, and a counter, so minting one is cheap.
    pub fn generate() -> Self {
        static PREFIX: OnceLock<u32> = OnceLock::new();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let prefix = *PREFIX.get_or_init(|| {
            let mut bytes = [0u8; 4];
            let _ = rand::rngs::SysRng.try_fill_bytes(&mut bytes);
            u32::from_le_bytes(bytes)
        });
        RequestId(format!("{prefix:08x}{:08x}", COUNTER.fetch_add(1, Ordering::Relaxed)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a request was not served. Every front end maps this once: GraphQL to
/// `extensions.code`, REST to `{"error": {"code", ...}}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// No credentials, or credentials that do not authenticate.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// An argument is out of range or malformed.
    #[error("{0}")]
    BadUserInput(String),
    /// A key over one of its (or its owner's) rate limits; retry in this many seconds.
    #[error("{message}")]
    RateLimitExceeded {
        /// What to tell the caller.
        message: String,
        /// When the tightest window resets, in seconds.
        retry_after_secs: i64,
    },
    /// A key without enough credits.
    #[error("{0}")]
    UsageExceeded(String),
    /// The database cannot be reached now (a failover, a restart, a full
    /// pool): nothing was changed, unless the connection broke during the
    /// commit. Retry; the details are in the log under `request_id`.
    #[error("Latchkey cannot reach its database right now (e.g. during a failover). Please retry in a moment.")]
    Unavailable {
        /// The request whose log line has the details.
        request_id: RequestId,
    },
    /// Something failed on our side; the details are in the log under `request_id`.
    #[error("Internal server error. It has been logged; please retry or contact support.")]
    Internal {
        /// The request whose log line has the details.
        request_id: RequestId,
    },
}

impl AppError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::BadUserInput(_) => "BAD_USER_INPUT",
            AppError::RateLimitExceeded { .. } => "RATE_LIMIT_EXCEEDED",
            AppError::UsageExceeded(_) => "USAGE_EXCEEDED",
            AppError::Unavailable { .. } => "UNAVAILABLE",
            AppError::Internal { .. } => "INTERNAL",
        }
    }

    /// Logs `detail` (never sent to the caller) with the request id and
    /// returns [`AppError::Internal`] carrying that id.
    pub fn internal(detail: &dyn fmt::Display) -> Self {
        let request_id = RequestId::generate();
        tracing::error!(request_id = %request_id, error = %detail, "internal error");
        AppError::Internal { request_id }
    }

    /// Logs `detail` (never sent to the caller) with the request id and
    /// returns [`AppError::Unavailable`] carrying that id. A warning, not an
    /// error: the remedy is the caller's retry.
    pub fn unavailable(detail: &dyn fmt::Display) -> Self {
        let request_id = RequestId::generate();
        tracing::warn!(request_id = %request_id, error = %detail, "database unavailable");
        AppError::Unavailable { request_id }
    }

    /// The request id of an internal error or of an unavailable database.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self {
            AppError::Internal { request_id } | AppError::Unavailable { request_id } => Some(request_id),
            _ => None,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() { AppError::unavailable(&e) } else { AppError::internal(&e) }
    }
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        AppError::internal(&e)
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> Self {
        AppError::internal(&format_args!("blocking task failed: {e}"))
    }
}

/// Result of a use case.
pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_carry_an_id_and_keep_their_detail_to_the_log() {
        let (first, second) = (AppError::internal(&"disk on fire"), AppError::internal(&"disk on fire"));
        let id = first.request_id().expect("an id");
        assert_eq!(id.as_str().len(), 16);
        assert_ne!(Some(id), second.request_id(), "every failure has its own id");
        assert_eq!(first.code(), "INTERNAL");
        assert!(!first.to_string().contains("disk"), "the detail stays in the log");
        assert_eq!(AppError::Forbidden("no".into()).request_id(), None);
    }
}
