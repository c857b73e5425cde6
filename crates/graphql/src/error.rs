//! The one mapping from [`AppError`] to GraphQL errors: `extensions.code`
//! always, `extensions.requestId` on `INTERNAL` and `UNAVAILABLE` (which
//! asks the caller to retry).

use async_graphql::{ErrorExtensionValues, ServerError};
use latchkey_app::AppError;

/// Result of a resolver.
pub type ApiResult<T> = Result<T, async_graphql::Error>;

fn fill(extensions: &mut ErrorExtensionValues, e: &AppError) {
    extensions.set("code", e.code());
    if let Some(id) = e.request_id() {
        extensions.set("requestId", id.as_str());
    }
}

/// An application error as a resolver error.
pub fn gql_error(e: AppError) -> async_graphql::Error {
    let mut error = async_graphql::Error::new(e.to_string());
    fill(error.extensions.get_or_insert_with(Default::default), &e);
    error
}

/// An application error as a response-level error.
pub fn server_error(e: AppError) -> ServerError {
    let mut error = ServerError::new(e.to_string(), None);
    fill(error.extensions.get_or_insert_with(Default::default), &e);
    error
}

/// `.gql()?` on application results inside resolvers.
pub(crate) trait OrGraphql<T> {
    /// Maps the error.
    fn gql(self) -> ApiResult<T>;
}

impl<T> OrGraphql<T> for Result<T, AppError> {
    fn gql(self) -> ApiResult<T> {
        self.map_err(gql_error)
    }
}
