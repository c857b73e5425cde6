//! Mutations. Validation problems come back as `userErrors` and change
//! nothing; authentication and authorisation problems are top-level errors.

use async_graphql::{Context, ID, Object};
use latchkey_app::{DeleteKey, EditDescription, GenerateKey, RotateKey};

use crate::error::{ApiResult, OrGraphql};
use crate::query::context;
use crate::types::{
    DeleteApiKeyInput, DeleteApiKeyPayload, GenerateApiKeyInput, GenerateApiKeyPayload, GqlApiKey, RotateApiKeyInput,
    RotateApiKeyPayload, UpdateApiKeyDescriptionInput, UpdateApiKeyDescriptionPayload, user_errors,
};

/// The mutation root.
#[derive(Debug, Default)]
pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Generates a key for an owner. The secret is in the payload, once.
    /// The owner is emailed.
    async fn generate_api_key(
        &self,
        ctx: &Context<'_>,
        input: GenerateApiKeyInput,
    ) -> ApiResult<GenerateApiKeyPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let command = GenerateKey { owner_id: input.owner_id.0, description: input.description };
        Ok(match admin.generate(command).await.gql()? {
            Err(violations) => GenerateApiKeyPayload { user_errors: user_errors(violations), ..Default::default() },
            Ok(made) => GenerateApiKeyPayload {
                secret: Some(made.secret.expose().to_owned()),
                api_key: Some(GqlApiKey::from(made.key)),
                user_errors: vec![],
            },
        })
    }

    /// Replaces a key's secret. The old secret stops working at once; the new
    /// one is in the payload, once. The owner is emailed.
    async fn rotate_api_key(&self, ctx: &Context<'_>, input: RotateApiKeyInput) -> ApiResult<RotateApiKeyPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(match admin.rotate(RotateKey { id: input.id.0 }).await.gql()? {
            Err(violations) => RotateApiKeyPayload { user_errors: user_errors(violations), ..Default::default() },
            Ok(made) => RotateApiKeyPayload {
                secret: Some(made.secret.expose().to_owned()),
                api_key: Some(GqlApiKey::from(made.key)),
                user_errors: vec![],
            },
        })
    }

    /// Changes a key's description. Nobody is emailed.
    async fn update_api_key_description(
        &self,
        ctx: &Context<'_>,
        input: UpdateApiKeyDescriptionInput,
    ) -> ApiResult<UpdateApiKeyDescriptionPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let command = EditDescription { id: input.id.0, description: input.description };
        Ok(match admin.edit_description(command).await.gql()? {
            Err(violations) => {
                UpdateApiKeyDescriptionPayload { user_errors: user_errors(violations), ..Default::default() }
            }
            Ok(key) => UpdateApiKeyDescriptionPayload { api_key: Some(GqlApiKey::from(key)), user_errors: vec![] },
        })
    }

    /// Deletes a key. Its secret stops working at once. The owner is emailed.
    async fn delete_api_key(&self, ctx: &Context<'_>, input: DeleteApiKeyInput) -> ApiResult<DeleteApiKeyPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(match admin.delete(DeleteKey { id: input.id.0 }).await.gql()? {
            Err(violations) => DeleteApiKeyPayload { user_errors: user_errors(violations), ..Default::default() },
            Ok(key) => DeleteApiKeyPayload { deleted_api_key_id: Some(ID(key.id.to_string())), user_errors: vec![] },
        })
    }
}
