//! Provisioning by an identity provider (SCIM): a key allowed the `scim`
//! permission manages the users of its own tenant. A [`ScimAdmin`] exists
//! only after that check ([`App::scim`]), so no SCIM handler can skip it.
//!
//! Its reach: the users SCIM created and those an internal admin linked
//! (`setUserScimManaged`); anyone else is unknown to it. It makes internal
//! admins only where the tenant allows it (`scimMayGrantInternalAdmin`), and
//! never raises the role of the user that owns its own key.

use latchkey_domain::lifecycle::scim_actor;
use latchkey_domain::restrictions::{PermissionSet, owner_permissions};
use latchkey_domain::{Role, TenantId, User, UserId};
use latchkey_store::StoreError;
pub use latchkey_store::{ScimMatch, ScimUser, ScimUserWrite};

use crate::App;
use crate::auth::{Authentication, Principal};
use crate::change::Change;
use crate::error::{AppError, AppResult};
use crate::owners::user_changed;

/// The outcome of a SCIM write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScimWritten {
    /// Done: the user as it is now.
    Done(Box<ScimUser>),
    /// No such (undeleted) user in the tenant.
    NotFound,
    /// Another user of the tenant has this `userName`.
    Conflict,
    /// `If-Match` named another version.
    VersionMismatch,
}

/// The SCIM use cases of one tenant, for a key allowed `scim`.
#[derive(Debug)]
pub struct ScimAdmin<'a> {
    app: &'a App,
    tenant: TenantId,
    /// Who the audit trail and mail say did it: the provider, by its key.
    actor: User,
    /// The owner of the key acting: its role is never raised through it.
    key_owner: UserId,
}

impl App {
    /// The SCIM use cases for the caller: `UNAUTHENTICATED` without a key,
    /// `FORBIDDEN` for an admin token or a key without the `scim` permission.
    pub fn scim<'a>(&'a self, auth: &'a Authentication) -> AppResult<ScimAdmin<'a>> {
        match auth.principal()? {
            Principal::Integration { key, tenant } => {
                let scim = PermissionSet::parse(["scim"]).map_err(|_| AppError::internal(&"no `scim` permission"))?;
                let may = key.key.restrictions.effective_permissions(owner_permissions(key.owner.role));
                if !may.contains_all(scim) {
                    return Err(AppError::Forbidden(
                        "This API key may not provision users: it lacks the `scim` permission.".into(),
                    ));
                }
                let actor = scim_actor(tenant.id, &key.key.last_four);
                Ok(ScimAdmin { app: self, tenant: tenant.id, actor, key_owner: key.owner.id })
            }
            Principal::Admin { .. } => {
                Err(AppError::Forbidden("SCIM is for an identity provider's API key, not an admin token.".into()))
            }
        }
    }
}

impl ScimAdmin<'_> {
    /// A user of the tenant; `None` when unknown, deleted, another tenant's or malformed.
    pub async fn get(&self, id: &str) -> AppResult<Option<ScimUser>> {
        let Ok(id) = id.parse::<UserId>() else { return Ok(None) };
        Ok(self.app.store.scim_user(self.tenant, id).await?)
    }

    /// The users matching every term: how many in all, and `count` from `offset`.
    pub async fn list(&self, terms: &[ScimMatch], offset: u64, count: u64) -> AppResult<(u64, Vec<ScimUser>)> {
        Ok(self.app.store.scim_users(self.tenant, terms, offset, count).await?)
    }

    /// `FORBIDDEN` unless SCIM may give `role` here (internal admin only
    /// where the tenant allows it).
    async fn may_grant(&self, role: Role) -> AppResult<()> {
        if role == Role::InternalAdmin && !self.app.store.scim_may_grant_internal_admin(self.tenant).await? {
            return Err(AppError::Forbidden(
                "SCIM may not make internal admins in this tenant; an internal admin can allow it \
                 (tenant setting scimMayGrantInternalAdmin)."
                    .into(),
            ));
        }
        Ok(())
    }

    /// Provisions a user.
    pub async fn create(&self, write: ScimUserWrite) -> AppResult<ScimWritten> {
        self.may_grant(write.role).await?;
        match self.app.store.scim_create(self.tenant, write, self.app.clock.now()).await {
            Ok(user) => Ok(ScimWritten::Done(Box::new(user))),
            Err(StoreError::Conflict(_)) => Ok(ScimWritten::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a user, at `expected` version when given. Deactivating or
    /// demoting it suspends its keys (see `owners::user_changed`). A new role
    /// is checked against the user as it is, row-locked in the unit of work.
    pub async fn replace(&self, id: &str, write: ScimUserWrite, expected: Option<i32>) -> AppResult<ScimWritten> {
        let Ok(id) = id.parse::<UserId>() else { return Ok(ScimWritten::NotFound) };
        let mut change = Change::begin(self.app).await?;
        let Some(before) = change.locked_scim_user(self.tenant, id).await? else {
            return Ok(ScimWritten::NotFound);
        };
        if expected.is_some_and(|v| v != before.version) {
            return Ok(ScimWritten::VersionMismatch);
        }
        if write.role != before.user.role {
            let (old, new) = (owner_permissions(before.user.role), owner_permissions(write.role));
            let raised = write.role == Role::InternalAdmin || !old.contains_all(new);
            if id == self.key_owner && raised {
                return Err(AppError::Forbidden("This API key may not raise the role of its own owner.".into()));
            }
            self.may_grant(write.role).await?;
        }
        let now = self.app.clock.now();
        let after = match change.replace_scim_user(self.tenant, id, write, now).await {
            Ok(after) => after,
            // Another user of the tenant has this `userName`.
            Err(StoreError::Conflict(_)) => return Ok(ScimWritten::Conflict),
            Err(e) => return Err(e.into()),
        };
        user_changed(&mut change, &before.user, &after.user, &self.actor, now).await?;
        change.commit().await?;
        Ok(ScimWritten::Done(Box::new(after)))
    }

    /// Deletes a user as the provider sees it: it is deactivated (its keys
    /// suspended, the admins told) and hidden from SCIM, and its address is
    /// freed for a new user; its name stays in the audit trail. False when
    /// there was none.
    pub async fn delete(&self, id: &str) -> AppResult<bool> {
        let Ok(id) = id.parse::<UserId>() else { return Ok(false) };
        let now = self.app.clock.now();
        let mut change = Change::begin(self.app).await?;
        let Some(before) = change.locked_scim_user(self.tenant, id).await? else { return Ok(false) };
        change.delete_scim_user(self.tenant, id, now).await?;
        let gone = User { active: false, ..before.user.clone() };
        user_changed(&mut change, &before.user, &gone, &self.actor, now).await?;
        change.commit().await?;
        Ok(true)
    }
}
