//! Mutations. Validation problems come back as `userErrors` and change
//! nothing; authentication and authorisation problems are top-level errors.

use async_graphql::{Context, ID, Object};

use crate::auth::Authentication;
use crate::error::{ApiError, ApiResult};
use crate::service::{KeyService, ServiceError};
use crate::types::{
    DeleteApiKeyInput, DeleteApiKeyPayload, GenerateApiKeyInput, GenerateApiKeyPayload, RotateApiKeyInput,
    RotateApiKeyPayload, UpdateApiKeyDescriptionInput, UpdateApiKeyDescriptionPayload, hydrate, user_errors,
};

/// The mutation root.
#[derive(Debug, Default)]
pub struct MutationRoot;

fn ext(e: ApiError) -> async_graphql::Error {
    async_graphql::ErrorExtensions::extend(&e)
}

fn internal(e: ServiceError) -> async_graphql::Error {
    ext(ApiError::internal(&e))
}

fn setup<'a>(ctx: &Context<'a>) -> ApiResult<(&'a latchkey_domain::User, &'a KeyService)> {
    let auth = ctx.data_opt::<Authentication>().unwrap_or(&Authentication::Anonymous);
    let admin = auth.key_manager().map_err(ext)?;
    let service = ctx.data::<KeyService>().map_err(|_| ext(ApiError::internal(&"no service")))?;
    Ok((admin, service))
}

#[Object]
impl MutationRoot {
    /// Generates a key for an owner. The secret is in the payload, once.
    /// The owner is emailed.
    async fn generate_api_key(
        &self,
        ctx: &Context<'_>,
        input: GenerateApiKeyInput,
    ) -> ApiResult<GenerateApiKeyPayload> {
        let (admin, service) = setup(ctx)?;
        match service.generate(admin, &input.owner_id, &input.description).await.map_err(internal)? {
            Err(violations) => Ok(GenerateApiKeyPayload { user_errors: user_errors(violations), ..Default::default() }),
            Ok(made) => {
                let api_key = hydrate(service.store(), admin.tenant_id, vec![made.key]).await.map_err(ext)?.pop();
                Ok(GenerateApiKeyPayload {
                    api_key,
                    secret: Some(made.secret.expose().to_owned()),
                    user_errors: vec![],
                })
            }
        }
    }

    /// Replaces a key's secret. The old secret stops working at once; the new
    /// one is in the payload, once. The owner is emailed.
    async fn rotate_api_key(&self, ctx: &Context<'_>, input: RotateApiKeyInput) -> ApiResult<RotateApiKeyPayload> {
        let (admin, service) = setup(ctx)?;
        match service.rotate(admin, &input.id).await.map_err(internal)? {
            Err(violations) => Ok(RotateApiKeyPayload { user_errors: user_errors(violations), ..Default::default() }),
            Ok(made) => {
                let api_key = hydrate(service.store(), admin.tenant_id, vec![made.key]).await.map_err(ext)?.pop();
                Ok(RotateApiKeyPayload { api_key, secret: Some(made.secret.expose().to_owned()), user_errors: vec![] })
            }
        }
    }

    /// Changes a key's description. Nobody is emailed.
    async fn update_api_key_description(
        &self,
        ctx: &Context<'_>,
        input: UpdateApiKeyDescriptionInput,
    ) -> ApiResult<UpdateApiKeyDescriptionPayload> {
        let (admin, service) = setup(ctx)?;
        match service.update_description(admin, &input.id, &input.description).await.map_err(internal)? {
            Err(violations) => {
                Ok(UpdateApiKeyDescriptionPayload { user_errors: user_errors(violations), ..Default::default() })
            }
            Ok(key) => {
                let api_key = hydrate(service.store(), admin.tenant_id, vec![key]).await.map_err(ext)?.pop();
                Ok(UpdateApiKeyDescriptionPayload { api_key, user_errors: vec![] })
            }
        }
    }

    /// Deletes a key. Its secret stops working at once. The owner is emailed.
    async fn delete_api_key(&self, ctx: &Context<'_>, input: DeleteApiKeyInput) -> ApiResult<DeleteApiKeyPayload> {
        let (admin, service) = setup(ctx)?;
        match service.delete(admin, &input.id).await.map_err(internal)? {
            Err(violations) => Ok(DeleteApiKeyPayload { user_errors: user_errors(violations), ..Default::default() }),
            Ok(key) => {
                Ok(DeleteApiKeyPayload { deleted_api_key_id: Some(ID(key.id.to_string())), user_errors: vec![] })
            }
        }
    }
}
