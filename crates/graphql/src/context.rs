//! What every resolver starts from: the application and the caller.

use async_graphql::Context;
use latchkey_app::{App, AppError, Authentication};

use crate::error::{ApiResult, gql_error};

/// The application and the caller of this request.
pub(crate) fn context<'a>(ctx: &Context<'a>) -> ApiResult<(&'a App, &'a Authentication)> {
    let app = ctx.data::<App>().map_err(|_| gql_error(AppError::internal(&"the schema has no App")))?;
    Ok((app, ctx.data_opt::<Authentication>().unwrap_or(&Authentication::Anonymous)))
}
