//! The key use cases of an internal admin: generate, rotate, edit, delete,
//! and reading the key table and the audit trail. Reachable only through a
//! [`KeyAdmin`], which [`crate::App::key_admin`] hands out after the
//! permission check.

use std::collections::HashMap;

use latchkey_domain::error::{Violation, ViolationCode};
use latchkey_domain::hashing::hash_secret;
use latchkey_domain::{
    ApiKey, ApiKeyId, ApiKeySecret, AuditEntry, Description, DomainError, SearchTerm, User, UserId, policy,
};
use latchkey_store::{KeyQuery, NewCredential, NewKey, StoreError};

use crate::App;
use crate::error::{AppError, AppResult};

/// Largest page of the key table and the audit trail.
pub const MAX_PAGE_SIZE: i32 = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: i32 = 50;

/// A refused input, attached to the input field it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The input field (`description`, `ownerId`, `id`).
    pub field: &'static str,
    /// What is wrong.
    pub violation: Violation,
}

impl FieldViolation {
    fn new(field: &'static str, code: ViolationCode, message: impl Into<String>) -> Self {
        FieldViolation { field, violation: Violation::new(code, message) }
    }

    fn key_not_found() -> Self {
        Self::new("id", ViolationCode::NotFound, "API key not found.")
    }
}

/// Either the result or the list of refused inputs (nothing was changed).
pub type Outcome<T> = Result<T, Vec<FieldViolation>>;

/// Generate a key for an owner.
#[derive(Clone, Debug)]
pub struct GenerateKey {
    /// The owner's id, as given.
    pub owner_id: String,
    /// The description, as given.
    pub description: String,
}

/// Give a key a new secret.
#[derive(Clone, Debug)]
pub struct RotateKey {
    /// The key's id, as given.
    pub id: String,
}

/// Change a key's description.
#[derive(Clone, Debug)]
pub struct EditDescription {
    /// The key's id, as given.
    pub id: String,
    /// The new description, as given.
    pub description: String,
}

/// Delete a key.
#[derive(Clone, Debug)]
pub struct DeleteKey {
    /// The key's id, as given.
    pub id: String,
}

/// A page request on the key table.
#[derive(Clone, Debug, Default)]
pub struct KeyTableQuery {
    /// Page size, 1 to [`MAX_PAGE_SIZE`] (default [`DEFAULT_PAGE_SIZE`]).
    pub first: Option<i32>,
    /// Only keys older than this one.
    pub after: Option<ApiKeyId>,
    /// Only keys of this owner (as given; one that cannot exist owns nothing).
    pub owner_id: Option<String>,
    /// Only keys whose description contains this, ignoring case.
    pub search: Option<String>,
}

/// A page request on the audit trail.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only entries of this key (as given; which may have been deleted).
    pub key_id: Option<String>,
    /// Page size, as for [`KeyTableQuery::first`].
    pub first: Option<i32>,
    /// Only entries older than this one.
    pub after: Option<uuid::Uuid>,
}

/// A key with the users it names, ready to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyView {
    /// The key.
    pub key: ApiKey,
    /// Its owner.
    pub owner: User,
    /// Who created it (none for keys from before key management).
    pub created_by: Option<User>,
    /// Who last edited it (none for keys from before key management).
    pub last_edited_by: Option<User>,
}

impl KeyView {
    /// What an integration may see of its own key: the key, and its owner's
    /// id, name and role. Not who created or edited it, and no one's email:
    /// admins' contact details are not an integration's business.
    pub(crate) fn redacted_for_integration(mut self) -> Self {
        self.created_by = None;
        self.last_edited_by = None;
        self.owner.email.clear();
        self
    }
}

/// An audit entry with its actor, if that user still exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditView {
    /// The entry.
    pub entry: AuditEntry,
    /// Who did it.
    pub actor: Option<User>,
}

/// One page, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Whether older items follow.
    pub has_next_page: bool,
    /// All items matching the filters.
    pub total_count: u64,
}

impl<T> Page<T> {
    fn empty() -> Self {
        Page { items: Vec::new(), has_next_page: false, total_count: 0 }
    }
}

/// A key with the secret that was just made for it. The secret is shown once.
#[derive(Debug)]
pub struct KeyWithSecret {
    /// The key.
    pub key: KeyView,
    /// The new secret.
    pub secret: ApiKeySecret,
}

/// How many times a lookup-id collision is retried (each is ~2^-71 likely).
const GENERATE_ATTEMPTS: usize = 3;

/// Checks a page size.
pub fn page_size(first: Option<i32>) -> AppResult<u64> {
    let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&first) {
        return Err(AppError::BadUserInput(format!("`first` must be between 1 and {MAX_PAGE_SIZE}.")));
    }
    Ok(u64::try_from(first).unwrap_or(1))
}

fn new_credential() -> AppResult<(ApiKeySecret, NewCredential)> {
    let secret = ApiKeySecret::generate().map_err(DomainError::from)?;
    let credential = NewCredential::new(&secret, hash_secret(&secret));
    Ok((secret, credential))
}

/// Where a fresh secret goes.
enum SecretTarget {
    /// A new key.
    NewKey { owner: UserId, description: Description },
    /// An existing key, rotated.
    Rotate(ApiKeyId),
}

/// An internal admin, checked, acting in their tenant.
#[derive(Clone, Copy, Debug)]
pub struct KeyAdmin<'a> {
    pub(crate) app: &'a App,
    pub(crate) actor: &'a User,
}

impl KeyAdmin<'_> {
    /// Writes a fresh secret to `target`, with a new secret again should the
    /// lookup id be taken. `None` when the key to rotate does not exist.
    async fn write_new_secret(&self, target: SecretTarget) -> AppResult<Option<(ApiKey, ApiKeySecret)>> {
        let (store, tenant, now) = (&self.app.store, self.actor.tenant_id, self.app.clock.now());
        for _ in 0..GENERATE_ATTEMPTS {
            let (secret, credential) = new_credential()?;
            let written = match &target {
                SecretTarget::NewKey { owner, description } => {
                    let new = NewKey::new(tenant, *owner, description.clone(), credential);
                    store.insert_generated_key(new, self.actor, now).await.map(Some)
                }
                SecretTarget::Rotate(id) => store.rotate_key(tenant, *id, credential, self.actor, now).await,
            };
            match written {
                Ok(done) => return Ok(done.map(|key| (key, secret))),
                // The database message names the lookup id, a part of the new secret: not logged.
                Err(StoreError::Conflict(_)) => tracing::warn!("lookup id collision; retrying with a new secret"),
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::internal(&"lookup id collided repeatedly"))
    }

    /// Generates a key; the owner is mailed.
    pub async fn generate(&self, command: GenerateKey) -> AppResult<Outcome<KeyWithSecret>> {
        let tenant = self.actor.tenant_id;
        let mut violations = Vec::new();
        let description = Description::parse(&command.description)
            .map_err(|e| violations.push(FieldViolation { field: "description", violation: e.into() }))
            .ok();
        let owner = match command.owner_id.parse::<UserId>() {
            Ok(id) => self.app.store.user(tenant, id).await?,
            Err(_) => None,
        };
        match &owner {
            None => violations.push(FieldViolation::new("ownerId", ViolationCode::NotFound, "Owner not found.")),
            Some(owner) if !policy::may_own_keys(owner, tenant) => violations.push(FieldViolation::new(
                "ownerId",
                ViolationCode::InvalidOwner,
                "The owner must be an internal admin or an integration user.",
            )),
            Some(_) => {}
        }
        let (Some(owner), Some(description), true) = (owner, description, violations.is_empty()) else {
            return Ok(Err(violations));
        };
        let made = self.write_new_secret(SecretTarget::NewKey { owner: owner.id, description }).await?;
        let Some((key, secret)) = made else { return Err(AppError::internal(&"a generated key was not written")) };
        self.app.outbox.notify_one();
        Ok(Ok(KeyWithSecret { key: self.view(key).await?, secret }))
    }

    /// Gives a key a new secret; the old one stops working at once, here and
    /// on every replica. The owner is mailed.
    pub async fn rotate(&self, command: RotateKey) -> AppResult<Outcome<KeyWithSecret>> {
        let Ok(id) = command.id.parse::<ApiKeyId>() else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        let Some((key, secret)) = self.write_new_secret(SecretTarget::Rotate(id)).await? else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        self.app.verifier.forget(key.id);
        self.app.outbox.notify_one();
        Ok(Ok(KeyWithSecret { key: self.view(key).await?, secret }))
    }

    /// Changes a key's description. Nobody is mailed.
    pub async fn edit_description(&self, command: EditDescription) -> AppResult<Outcome<KeyView>> {
        let mut violations = Vec::new();
        let id = command.id.parse::<ApiKeyId>().ok();
        if id.is_none() {
            violations.push(FieldViolation::key_not_found());
        }
        let description = Description::parse(&command.description)
            .map_err(|e| violations.push(FieldViolation { field: "description", violation: e.into() }))
            .ok();
        let (Some(id), Some(description)) = (id, description) else {
            return Ok(Err(violations));
        };
        let now = self.app.clock.now();
        match self.app.store.update_key_description(self.actor.tenant_id, id, description, self.actor, now).await? {
            Some(key) => Ok(Ok(self.view(key).await?)),
            None => Ok(Err(vec![FieldViolation::key_not_found()])),
        }
    }

    /// Deletes a key; its secret stops working at once. The owner is mailed.
    pub async fn delete(&self, command: DeleteKey) -> AppResult<Outcome<ApiKey>> {
        let Ok(id) = command.id.parse::<ApiKeyId>() else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        let now = self.app.clock.now();
        match self.app.store.delete_key(self.actor.tenant_id, id, self.actor, now).await? {
            Some(key) => {
                self.app.verifier.forget(key.id);
                self.app.outbox.notify_one();
                Ok(Ok(key))
            }
            None => Ok(Err(vec![FieldViolation::key_not_found()])),
        }
    }

    /// One key of the tenant; `None` for an unknown or malformed id.
    pub async fn key(&self, id: &str) -> AppResult<Option<KeyView>> {
        let Ok(id) = id.parse() else { return Ok(None) };
        match self.app.store.key(self.actor.tenant_id, id).await? {
            Some(key) => Ok(Some(self.view(key).await?)),
            None => Ok(None),
        }
    }

    /// A page of the key table, newest first.
    pub async fn key_table(&self, query: KeyTableQuery) -> AppResult<Page<KeyView>> {
        let first = page_size(query.first)?;
        let search = SearchTerm::parse(query.search.as_deref().unwrap_or_default())
            .map_err(|_| AppError::BadUserInput("`search` is too long (maximum is 255 characters).".into()))?;
        let owner = match query.owner_id.map(|raw| raw.parse::<UserId>()) {
            None => None,
            Some(Ok(id)) => Some(id),
            // An owner that cannot exist owns nothing: same as an unknown one.
            Some(Err(_)) => return Ok(Page::empty()),
        };
        let query = KeyQuery { first, after: query.after, owner, search };
        let page = self.app.store.list_keys(self.actor.tenant_id, &query).await?;
        Ok(Page {
            items: self.views(page.keys).await?,
            has_next_page: page.has_next_page,
            total_count: page.total_count,
        })
    }

    /// A page of the tenant's audit trail (or of one key's), newest first.
    pub async fn audit_trail(&self, query: AuditQuery) -> AppResult<Page<AuditView>> {
        let first = page_size(query.first)?;
        let key = match query.key_id.map(|raw| raw.parse::<ApiKeyId>()) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => return Ok(Page::empty()),
        };
        let tenant = self.actor.tenant_id;
        let page = self.app.store.list_audit(tenant, key, first, query.after).await?;
        let users = self.app.users(tenant, page.entries.iter().map(|e| e.actor_id).collect()).await?;
        let items = page
            .entries
            .into_iter()
            .map(|entry| AuditView { actor: users.get(&entry.actor_id).cloned(), entry })
            .collect();
        Ok(Page { items, has_next_page: page.has_next_page, total_count: page.total_count })
    }

    /// Who may own a new key: the admin first, then the other internal admins
    /// and the integration users, by name.
    pub async fn owner_candidates(&self) -> AppResult<Vec<User>> {
        let mut users = self.app.store.key_owner_candidates(self.actor.tenant_id).await?;
        users.sort_by_key(|u| u.id != self.actor.id);
        Ok(users)
    }

    async fn view(&self, key: ApiKey) -> AppResult<KeyView> {
        self.app.key_views(vec![key]).await?.pop().ok_or_else(|| AppError::internal(&"a key view went missing"))
    }

    async fn views(&self, keys: Vec<ApiKey>) -> AppResult<Vec<KeyView>> {
        self.app.key_views(keys).await
    }
}

impl App {
    /// The users of `tenant` among `ids`, by id, with one query.
    async fn users(&self, tenant: latchkey_domain::TenantId, mut ids: Vec<UserId>) -> AppResult<HashMap<UserId, User>> {
        ids.sort();
        ids.dedup();
        Ok(self.store.users_by_ids(tenant, &ids).await?.into_iter().map(|u| (u.id, u)).collect())
    }

    /// Views of keys of one tenant, resolving their users with one query.
    pub(crate) async fn key_views(&self, keys: Vec<ApiKey>) -> AppResult<Vec<KeyView>> {
        let Some(tenant) = keys.first().map(|k| k.tenant_id) else { return Ok(Vec::new()) };
        let ids = keys.iter().flat_map(|k| [Some(k.owner_id), k.created_by, k.last_edited_by]).flatten().collect();
        let users = self.users(tenant, ids).await?;
        keys.into_iter()
            .map(|key| {
                let owner = users.get(&key.owner_id).cloned().ok_or_else(|| {
                    AppError::internal(&format_args!("owner {} of key {} is missing", key.owner_id, key.id))
                })?;
                let created_by = key.created_by.and_then(|id| users.get(&id).cloned());
                let last_edited_by = key.last_edited_by.and_then(|id| users.get(&id).cloned());
                Ok(KeyView { key, owner, created_by, last_edited_by })
            })
            .collect()
    }
}
