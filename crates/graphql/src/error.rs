//! The error policy: every top-level error carries a stable
//! `extensions.code`; internal failures are logged in full and reach the client
//! only as a generic message.

use async_graphql::{ErrorExtensions, ServerError};
use latchkey_store::StoreError;

/// A top-level GraphQL error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// No credentials, or credentials that do not authenticate.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// An argument is out of range or malformed.
    #[error("{0}")]
    BadUserInput(String),
    /// Something failed on our side; details are in the log only.
    #[error("Internal server error. It has been logged; please retry or contact support.")]
    Internal,
}

impl ApiError {
    /// The stable code in `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::BadUserInput(_) => "BAD_USER_INPUT",
            ApiError::Internal => "INTERNAL",
        }
    }

    /// Logs `detail` (never sent to the client) and returns [`ApiError::Internal`].
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError::Internal
    }

    /// As a response-level error.
    pub fn into_server_error(self) -> ServerError {
        let code = self.code();
        let mut e = ServerError::new(self.to_string(), None);
        e.extensions.get_or_insert_with(Default::default).set("code", code);
        e
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.to_string()).extend_with(|_, e| e.set("code", self.code()))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(&e)
    }
}

/// Result of a resolver.
pub type ApiResult<T> = Result<T, async_graphql::Error>;

/// Shorthand: turn an [`ApiError`] into a resolver error.
pub fn fail<T>(e: ApiError) -> ApiResult<T> {
    Err(e.extend())
}
