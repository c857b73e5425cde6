//! What the operators running Latchkey do from its host (`latchkey tenant`,
//! `user`, `outbox`, `keys` commands): the same use cases as admins where
//! there is one (deactivating a user is [`App::set_user_active`], with the
//! same audit, revocations and mail), acting as "Latchkey" in the user's
//! tenant. An [`Operator`] is the capability: only the server's CLI, run by
//! someone with the database's address, asks [`App::operator`] for one; no
//! network front end does.

use std::io::BufRead;

use chrono::Duration;
use latchkey_domain::error::Violation;
use latchkey_domain::lifecycle::system_actor;
use latchkey_domain::names;
use latchkey_domain::{ApiKey, ApiKeyId, EventDelivery, NoticeId, Role, Tenant, TenantId, User, UserId};
use latchkey_store::{NewUser, StoreError, StoredEvent, Written};

use crate::App;
use crate::change::Change;
use crate::error::AppResult;
use crate::owners::user_changed;

/// Why an operator's command changed nothing, said to the operator.
pub type Refusal = String;

/// The operator capability (see the module).
#[derive(Clone, Copy, Debug)]
pub struct Operator<'a> {
    app: &'a App,
}

/// What a change of a user's state did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserChange {
    /// The user as it is now.
    pub user: User,
    /// The keys it owns (suspended or working again).
    pub keys: Vec<ApiKeyId>,
    /// Whether anything changed.
    pub changed: bool,
}

fn name_refusal(what: &str, refused: Violation) -> Refusal {
    format!("{what} {}", refused.message)
}

impl App {
    /// The operator capability, for the local CLI only.
    pub fn operator(&self) -> Operator<'_> {
        Operator { app: self }
    }
}

impl Operator<'_> {
    /// Creates a tenant named `name` (the name rule of `names`).
    pub async fn create_tenant(&self, name: &str) -> AppResult<Result<Tenant, Refusal>> {
        let name = match names::name(name) {
            Ok(name) => name,
            Err(problem) => return Ok(Err(name_refusal("--name", problem))),
        };
        Ok(Ok(self.app.store.create_tenant(name, self.app.clock.now()).await?))
    }

    /// Sets (or with an empty value clears) the id a tenant has at the
    /// identity provider.
    pub async fn set_tenant_external_id(
        &self,
        tenant: TenantId,
        external_id: &str,
    ) -> AppResult<Result<Tenant, Refusal>> {
        let external_id = match external_id.trim() {
            "" => None,
            given => match names::name(given) {
                Ok(id) => Some(id),
                Err(problem) => return Ok(Err(name_refusal("--external-id", problem))),
            },
        };
        match self.app.store.set_tenant_external_id(tenant, external_id).await {
            Ok(Some(updated)) => Ok(Ok(updated)),
            Ok(None) => Ok(Err(format!("no tenant with id {tenant}"))),
            Err(StoreError::Conflict(_)) => {
                Ok(Err(format!("another tenant already has the external id {:?}", external_id.unwrap_or_default())))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a user.
    pub async fn create_user(
        &self,
        tenant: TenantId,
        email: &str,
        name: &str,
        role: Role,
    ) -> AppResult<Result<User, Refusal>> {
        let email = email.trim().to_owned();
        if !names::looks_like_email(&email) {
            return Ok(Err("--email must be an email address".into()));
        }
        let name = match names::name(name) {
            Ok(name) => name.to_owned(),
            Err(problem) => return Ok(Err(name_refusal("--name", problem))),
        };
        match self.app.store.create_user(NewUser { tenant_id: tenant, email, name, role }, self.app.clock.now()).await {
            Ok(user) => Ok(Ok(user)),
            Err(StoreError::Conflict(_)) => Ok(Err("a user with that email already exists in the tenant".into())),
            Err(StoreError::MissingReference(_)) => Ok(Err(format!("no tenant with id {tenant}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// The credential report of `tenant` (every key, oldest first).
    pub async fn credential_report(
        &self,
        tenant: TenantId,
    ) -> AppResult<Result<Vec<crate::usage::ReportRow>, Refusal>> {
        if self.app.store.tenant(tenant).await?.is_none() {
            return Ok(Err(format!("no tenant with id {tenant}")));
        }
        Ok(Ok(self.app.credential_report(tenant).await?))
    }

    /// The webhook deliveries of `tenant`, newest first, at most `limit`,
    /// optionally only those in `status`.
    pub async fn webhook_deliveries(
        &self,
        tenant: TenantId,
        status: Option<latchkey_domain::webhook_events::DeliveryStatus>,
        limit: u64,
    ) -> AppResult<Result<latchkey_store::DeliveryPage, Refusal>> {
        if self.app.store.tenant(tenant).await?.is_none() {
            return Ok(Err(format!("no tenant with id {tenant}")));
        }
        let statuses: Vec<_> = status.into_iter().collect();
        Ok(Ok(self.app.store.webhook_deliveries(tenant, None, &statuses, None, limit).await?))
    }

    /// A user of any tenant.
    pub async fn user(&self, id: UserId) -> AppResult<Option<User>> {
        Ok(self.app.store.user_in_any_tenant(id).await?)
    }

    /// Every user of `tenant` with how many keys it owns, in creation order.
    pub async fn users(&self, tenant: TenantId) -> AppResult<Result<Vec<(User, u64)>, Refusal>> {
        if self.app.store.tenant(tenant).await?.is_none() {
            return Ok(Err(format!("no tenant with id {tenant}")));
        }
        let (mut users, mut after) = (Vec::new(), None);
        loop {
            let page = self.app.store.users_page(tenant, &Default::default(), after, 500).await?;
            after = page.users.last().map(|(u, _)| u.id);
            users.extend(page.users);
            if !page.has_next_page {
                return Ok(Ok(users));
            }
        }
    }

    /// Deactivates or reactivates a user: the admins' use case
    /// ([`App::set_user_active`]), acting as "Latchkey".
    pub async fn set_user_active(&self, id: UserId, active: bool) -> AppResult<Result<UserChange, Refusal>> {
        let Some(found) = self.user(id).await? else { return Ok(Err(format!("no user with id {id}"))) };
        let actor = system_actor(found.tenant_id);
        Ok(match self.app.set_user_active(found.tenant_id, id, active, &actor).await? {
            Written::Done((user, keys)) => Ok(UserChange { user, keys, changed: true }),
            Written::Unchanged((user, keys)) => Ok(UserChange { user, keys, changed: false }),
            Written::NotFound => Err(format!("no user with id {id}")),
        })
    }

    /// Changes a user's role. A role that may not own keys suspends them as
    /// a deactivation does; one that may restores them (see `user_changed`).
    pub async fn set_user_role(&self, id: UserId, role: Role) -> AppResult<Result<UserChange, Refusal>> {
        let Some(found) = self.user(id).await? else { return Ok(Err(format!("no user with id {id}"))) };
        let (tenant, now) = (found.tenant_id, self.app.clock.now());
        let mut change = Change::begin(self.app).await?;
        let Some(before) = change.locked_user(tenant, id).await? else {
            return Ok(Err(format!("no user with id {id}")));
        };
        change.set_user_role(tenant, id, role).await?;
        let user = User { role, ..before.clone() };
        let keys = user_changed(&mut change, &before, &user, &system_actor(tenant), now).await?;
        change.commit().await?;
        Ok(Ok(UserChange { changed: before.role != role, user, keys }))
    }

    /// Owner notices, newest first, optionally in one delivery state.
    pub async fn notices(&self, delivery: Option<EventDelivery>, limit: u64) -> AppResult<Vec<StoredEvent>> {
        Ok(self.app.store.list_events(delivery, limit).await?)
    }

    /// Puts a notice back in the queue, due now.
    pub async fn retry_notice(&self, id: NoticeId) -> AppResult<Option<StoredEvent>> {
        let retried = self.app.store.retry_event(id, self.app.clock.now()).await?;
        if retried.is_some() {
            self.app.outbox.notify_one();
        }
        Ok(retried)
    }

    /// Enabled keys of every tenant that expire within `days` (expired ones
    /// included), soonest first, each with its owner if it still exists.
    pub async fn keys_expiring_within(&self, days: u16) -> AppResult<Vec<(ApiKey, Option<User>)>> {
        let until = self.app.clock.now() + Duration::days(i64::from(days));
        let mut keys = Vec::new();
        for key in self.app.store.keys_expiring_before(until).await? {
            let owner = self.app.store.user(key.tenant_id, key.owner_id).await?;
            keys.push((key, owner));
        }
        Ok(keys)
    }

    /// Imports keys from another system into `tenant` (see `import`): the
    /// JSON report, or why nothing was read.
    pub async fn import_keys(
        &self,
        tenant: TenantId,
        input: impl BufRead,
        dry_run: bool,
        atomic: bool,
    ) -> AppResult<Result<serde_json::Value, Refusal>> {
        if self.app.store.tenant(tenant).await?.is_none() {
            return Ok(Err(format!("no tenant with id {tenant}")));
        }
        let report = crate::import::run(self.app, tenant, input, dry_run, atomic, self.app.clock.now()).await?;
        Ok(report.map_err(|e| format!("cannot read the import file: {e}")))
    }

    /// Whether `tenant` exists.
    pub async fn tenant_exists(&self, tenant: TenantId) -> AppResult<bool> {
        Ok(self.app.store.tenant(tenant).await?.is_some())
    }
}
