//! Mutations. Validation problems come back as `userErrors` and change
//! nothing; authentication and authorisation problems are top-level errors.

use async_graphql::{Context, ID, Object};
use latchkey_app::{
    DeleteKey, EditDescription, ExpirePreviousSecret, GenerateKey, RotateKey, SetDisabled, SetExpiry, SetUserActive,
    TransferKey, TransferKeys, UpdateRestrictions,
};

use latchkey_app::limits::{AddCredits, SetOwnerRateLimits};

use crate::context::context;
use crate::error::{ApiResult, OrGraphql};
use crate::limits::{AddApiKeyCreditsInput, SetOwnerRateLimitsInput, UpdateApiKeyLimitsInput, limit_inputs};
use crate::types::{
    ApiKeyChangePayload, ApiKeyIdInput, DeleteApiKeyInput, DeleteApiKeyPayload, GenerateApiKeyInput,
    GenerateApiKeyPayload, GqlApiKey, RotateApiKeyInput, RotateApiKeyPayload, SetApiKeyExpiryInput,
    SetApiKeySelfRotationInput, SetOwnerRateLimitsPayload, SetUserActiveInput, SetUserActivePayload,
    SetUserScimManagedInput, SetUserScimManagedPayload, TenantSettings, TransferApiKeyInput, TransferApiKeysInput,
    TransferApiKeysPayload, UpdateApiKeyDescriptionInput, UpdateApiKeyDescriptionPayload,
    UpdateApiKeyRestrictionsInput, UpdateTenantSettingsInput, user_errors,
};

/// The mutation root: the keys' mutations, the key policy's and the webhooks'.
#[derive(async_graphql::MergedObject, Debug, Default)]
pub struct MutationRoot(KeyMutation, crate::key_policy::KeyPolicyMutation, crate::webhooks::WebhookMutation);

/// Mutations of keys, users and the tenant.
#[derive(Debug, Default)]
pub struct KeyMutation;

#[Object]
impl KeyMutation {
    /// Generates a key for an owner. The secret is in the payload, once.
    /// The owner is emailed.
    async fn generate_api_key(
        &self,
        ctx: &Context<'_>,
        input: GenerateApiKeyInput,
    ) -> ApiResult<GenerateApiKeyPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(match admin.generate(GenerateKey::from(input)).await.gql()? {
            Err(violations) => GenerateApiKeyPayload { user_errors: user_errors(violations), ..Default::default() },
            Ok(made) => GenerateApiKeyPayload {
                secret: Some(made.secret.expose().to_owned()),
                api_key: Some(GqlApiKey::from(made.key)),
                user_errors: vec![],
            },
        })
    }

    /// Replaces a key's secret. The old secret stops working at once, or after
    /// `overlapSeconds`; the new one is in the payload, once. The owner is
    /// emailed (with until when the old secret works).
    async fn rotate_api_key(&self, ctx: &Context<'_>, input: RotateApiKeyInput) -> ApiResult<RotateApiKeyPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let command = RotateKey {
            id: input.id.0,
            overlap_seconds: input.overlap_seconds,
            expires_at: input.expires_at,
            end_overlap_on_first_use: input.end_overlap_on_first_use.unwrap_or(false),
        };
        Ok(match admin.rotate(command).await.gql()? {
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

    /// Allows or forbids a key to rotate itself (`POST /v1/keys/rotate`);
    /// audited, nobody emailed.
    async fn set_api_key_self_rotation(
        &self,
        ctx: &Context<'_>,
        input: SetApiKeySelfRotationInput,
    ) -> ApiResult<ApiKeyChangePayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let command = latchkey_app::keys::SetSelfRotation { id: input.id.0, self_rotation: input.self_rotation };
        Ok(ApiKeyChangePayload::of(admin.set_self_rotation(command).await.gql()?))
    }

    /// Ends a rotation's overlap now: the previous secret stops working at
    /// once, on every replica.
    async fn expire_api_key_previous_secret(
        &self,
        ctx: &Context<'_>,
        input: ApiKeyIdInput,
    ) -> ApiResult<ApiKeyChangePayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let outcome = admin.expire_previous_secret(ExpirePreviousSecret { id: input.id.0 }).await.gql()?;
        Ok(ApiKeyChangePayload::of(outcome))
    }

    /// Sets when a key stops working, or with `expiresAt: null` that it never
    /// does. Its owner is warned 7 days and 1 day before, and told when it expired.
    async fn set_api_key_expiry(
        &self,
        ctx: &Context<'_>,
        input: SetApiKeyExpiryInput,
    ) -> ApiResult<ApiKeyChangePayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let outcome = admin.set_expiry(SetExpiry { id: input.id.0, expires_at: input.expires_at }).await.gql()?;
        Ok(ApiKeyChangePayload::of(outcome))
    }

    /// Switches a key off without deleting it: it answers `DISABLED` at once,
    /// on every replica. The owner is emailed.
    async fn disable_api_key(&self, ctx: &Context<'_>, input: ApiKeyIdInput) -> ApiResult<ApiKeyChangePayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let outcome = admin.set_disabled(SetDisabled { id: input.id.0, disabled: true }).await.gql()?;
        Ok(ApiKeyChangePayload::of(outcome))
    }

    /// Switches a disabled key back on, with the same secret. The owner is emailed.
    async fn enable_api_key(&self, ctx: &Context<'_>, input: ApiKeyIdInput) -> ApiResult<ApiKeyChangePayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let outcome = admin.set_disabled(SetDisabled { id: input.id.0, disabled: false }).await.gql()?;
        Ok(ApiKeyChangePayload::of(outcome))
    }

    /// Gives a key to another owner (an active internal admin or integration
    /// user). The secret is unchanged; a suspended key works again at once.
    /// The old and the new owner are emailed.
    async fn transfer_api_key(&self, ctx: &Context<'_>, input: TransferApiKeyInput) -> ApiResult<ApiKeyChangePayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let outcome = admin.transfer(TransferKey { id: input.id.0, owner_id: input.owner_id.0 }).await.gql()?;
        Ok(ApiKeyChangePayload::of(outcome))
    }

    /// Gives every key of one user (say, one who left) to another, in one
    /// transaction. Each key's old and new owner are emailed.
    async fn transfer_api_keys(
        &self,
        ctx: &Context<'_>,
        input: TransferApiKeysInput,
    ) -> ApiResult<TransferApiKeysPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let command = TransferKeys { from_owner_id: input.from_owner_id.0, to_owner_id: input.to_owner_id.0 };
        Ok(TransferApiKeysPayload::of(admin.transfer_all(command).await.gql()?))
    }

    /// Deactivates a user of the tenant (it can no longer sign in, and the
    /// keys it owns answer `OWNER_INACTIVE` at once, on every replica, until
    /// transferred) or reactivates it (the keys it still owns work again).
    async fn set_user_active(&self, ctx: &Context<'_>, input: SetUserActiveInput) -> ApiResult<SetUserActivePayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let command = SetUserActive { id: input.id.0, active: input.active };
        Ok(SetUserActivePayload::of(admin.set_user_active(command).await.gql()?))
    }

    /// Links a user to SCIM provisioning (`managed: true`) or unlinks it.
    /// SCIM sees and changes only the users it created and those linked here.
    async fn set_user_scim_managed(
        &self,
        ctx: &Context<'_>,
        input: SetUserScimManagedInput,
    ) -> ApiResult<SetUserScimManagedPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(SetUserScimManagedPayload::of(admin.set_user_scim_managed(&input.id, input.managed).await.gql()?))
    }

    /// Replaces a key's restrictions (permissions, clouds, addresses). They
    /// apply at once on every replica; the owner is emailed the before and after.
    async fn update_api_key_restrictions(
        &self,
        ctx: &Context<'_>,
        input: UpdateApiKeyRestrictionsInput,
    ) -> ApiResult<ApiKeyChangePayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let command = UpdateRestrictions { id: input.id.0, restrictions: input.restrictions.into() };
        Ok(ApiKeyChangePayload::of(admin.update_restrictions(command).await.gql()?))
    }

    /// Replaces a key's rate limits, its credits, or both (audited; the owner
    /// is emailed the before and after). They apply on every replica within a
    /// second; credits set here start a new period.
    async fn update_api_key_limits(
        &self,
        ctx: &Context<'_>,
        input: UpdateApiKeyLimitsInput,
    ) -> ApiResult<ApiKeyChangePayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(ApiKeyChangePayload::of(admin.update_limits(input.into()).await.gql()?))
    }

    /// Adds credits to a key that has credits (audited). Concurrent top-ups
    /// add up exactly.
    async fn add_api_key_credits(
        &self,
        ctx: &Context<'_>,
        input: AddApiKeyCreditsInput,
    ) -> ApiResult<ApiKeyChangePayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let command = AddCredits { id: input.id.0, amount: input.amount.into() };
        Ok(ApiKeyChangePayload::of(admin.add_credits(command).await.gql()?))
    }

    /// Replaces the rate limits every key of a user shares (audited): a
    /// key's request must pass its own limits and these.
    async fn set_owner_rate_limits(
        &self,
        ctx: &Context<'_>,
        input: SetOwnerRateLimitsInput,
    ) -> ApiResult<SetOwnerRateLimitsPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let command = SetOwnerRateLimits { owner_id: input.owner_id.0, rate_limits: limit_inputs(input.rate_limits) };
        Ok(SetOwnerRateLimitsPayload::of(admin.set_owner_rate_limits(command).await.gql()?))
    }

    /// Changes your tenant's settings.
    async fn update_tenant_settings(
        &self,
        ctx: &Context<'_>,
        input: UpdateTenantSettingsInput,
    ) -> ApiResult<TenantSettings> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        if let Some(response) = input.leak_response {
            admin.set_leak_response(response.into()).await.gql()?;
        }
        if let Some(allowed) = input.scim_may_grant_internal_admin {
            admin.set_scim_may_grant_internal_admin(allowed).await.gql()?;
        }
        Ok(TenantSettings {
            leak_response: admin.leak_response().await.gql()?.into(),
            scim_may_grant_internal_admin: admin.scim_may_grant_internal_admin().await.gql()?,
        })
    }
}
