//! The key use cases (generate, rotate, edit, delete, verify), independent of
//! GraphQL. CPU-bound argon2 work runs on the blocking pool behind a bounded
//! semaphore, so it never stalls the async workers and cannot be multiplied
//! without limit.

use std::sync::Arc;

use latchkey_domain::error::{Violation, ViolationCode};
use latchkey_domain::hashing::hash_secret;
use latchkey_domain::{ApiKey, ApiKeyId, ApiKeySecret, Description, DomainError, User, UserId, policy};
use latchkey_store::{NewCredential, NewKey, Store, StoreError};
use tokio::sync::{Notify, Semaphore};

use crate::clock::Clock;
use crate::verifier::VerifiedKeyCache;

/// A failure that is not the caller's fault. Logged, never shown.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Randomness or hashing failed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// A blocking task died.
    #[error("blocking task failed: {0}")]
    Blocking(String),
}

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

/// A key with the secret that was just made for it. The secret is shown once.
#[derive(Debug)]
pub struct KeyWithSecret {
    /// The key.
    pub key: ApiKey,
    /// The new secret.
    pub secret: ApiKeySecret,
}

/// How many times a lookup-id collision is retried (each is ~2^-71 likely).
const GENERATE_ATTEMPTS: usize = 3;

/// The key use cases.
#[derive(Clone, Debug)]
pub struct KeyService {
    store: Store,
    clock: Arc<dyn Clock>,
    argon_permits: Arc<Semaphore>,
    outbox: Arc<Notify>,
    cache: Arc<VerifiedKeyCache>,
}

fn parse_key_id(raw: &str) -> Option<ApiKeyId> {
    raw.parse().ok()
}

impl KeyService {
    /// A service over `store`, telling time with `clock`; `outbox` is
    /// notified after every change that wrote an owner notice, so the
    /// dispatcher sends it at once; `cache` forgets rotated and deleted keys.
    pub fn new(store: Store, clock: Arc<dyn Clock>, outbox: Arc<Notify>, cache: Arc<VerifiedKeyCache>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        KeyService { store, clock, argon_permits: Arc::new(Semaphore::new(cores * 2)), outbox, cache }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current time.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ServiceError> {
        let _permit = self.argon_permits.acquire().await.map_err(|e| ServiceError::Blocking(e.to_string()))?;
        tokio::task::spawn_blocking(f).await.map_err(|e| ServiceError::Blocking(e.to_string()))
    }

    async fn new_credential(&self) -> Result<(ApiKeySecret, NewCredential), ServiceError> {
        let secret = ApiKeySecret::generate().map_err(DomainError::from)?;
        let (secret, hash) = self
            .blocking(move || {
                let hash = hash_secret(&secret);
                (secret, hash)
            })
            .await?;
        let hash = hash.map_err(DomainError::from)?;
        let credential = NewCredential { lookup_id: secret.lookup_id(), hash, last_four: secret.last_four() };
        Ok((secret, credential))
    }

    /// Generates a key for `owner_id` with `description`, acting as `actor`.
    pub async fn generate(
        &self,
        actor: &User,
        owner_id: &str,
        description: &str,
    ) -> Result<Outcome<KeyWithSecret>, ServiceError> {
        let mut violations = Vec::new();
        let description = match Description::parse(description) {
            Ok(d) => Some(d),
            Err(e) => {
                violations.push(FieldViolation { field: "description", violation: e.into() });
                None
            }
        };
        let owner = match owner_id.parse::<UserId>() {
            Ok(id) => self.store.user(actor.tenant_id, id).await?,
            Err(_) => None,
        };
        match &owner {
            None => violations.push(FieldViolation::new("ownerId", ViolationCode::NotFound, "Owner not found.")),
            Some(owner) if !policy::may_own_keys(owner, actor.tenant_id) => violations.push(FieldViolation::new(
                "ownerId",
                ViolationCode::InvalidOwner,
                "The owner must be an internal admin or an integration user.",
            )),
            Some(_) => {}
        }
        let (Some(owner), Some(description), true) = (owner, description, violations.is_empty()) else {
            return Ok(Err(violations));
        };
        for _ in 0..GENERATE_ATTEMPTS {
            let (secret, credential) = self.new_credential().await?;
            let new =
                NewKey { tenant_id: actor.tenant_id, owner_id: owner.id, description: description.clone(), credential };
            match self.store.insert_generated_key(new, actor, self.clock.now()).await {
                Ok(key) => {
                    self.outbox.notify_one();
                    return Ok(Ok(KeyWithSecret { key, secret }));
                }
                // The database message names the lookup id, a part of the new secret: not logged.
                Err(StoreError::Conflict(_)) => tracing::warn!("lookup id collision; retrying with a new secret"),
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict("lookup id collided repeatedly".into()).into())
    }

    /// Gives key `id` a new secret; the old one stops working at once.
    pub async fn rotate(&self, actor: &User, id: &str) -> Result<Outcome<KeyWithSecret>, ServiceError> {
        let Some(id) = parse_key_id(id) else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        for _ in 0..GENERATE_ATTEMPTS {
            let (secret, credential) = self.new_credential().await?;
            match self.store.rotate_key(actor.tenant_id, id, credential, actor, self.clock.now()).await {
                Ok(Some(key)) => {
                    self.cache.invalidate(key.id);
                    self.outbox.notify_one();
                    return Ok(Ok(KeyWithSecret { key, secret }));
                }
                Ok(None) => return Ok(Err(vec![FieldViolation::key_not_found()])),
                // The database message names the lookup id, a part of the new secret: not logged.
                Err(StoreError::Conflict(_)) => tracing::warn!("lookup id collision; retrying with a new secret"),
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict("lookup id collided repeatedly".into()).into())
    }

    /// Changes key `id`'s description.
    pub async fn update_description(
        &self,
        actor: &User,
        id: &str,
        description: &str,
    ) -> Result<Outcome<ApiKey>, ServiceError> {
        let mut violations = Vec::new();
        let id = parse_key_id(id);
        let description = Description::parse(description)
            .map_err(|e| violations.push(FieldViolation { field: "description", violation: e.into() }))
            .ok();
        let (Some(id), Some(description)) = (id, description) else {
            if id.is_none() {
                violations.insert(0, FieldViolation::key_not_found());
            }
            return Ok(Err(violations));
        };
        match self.store.update_key_description(actor.tenant_id, id, description, actor, self.clock.now()).await? {
            Some(key) => Ok(Ok(key)),
            None => Ok(Err(vec![FieldViolation::key_not_found()])),
        }
    }

    /// Deletes key `id`; its secret stops working at once.
    pub async fn delete(&self, actor: &User, id: &str) -> Result<Outcome<ApiKey>, ServiceError> {
        let Some(id) = parse_key_id(id) else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        match self.store.delete_key(actor.tenant_id, id, actor, self.clock.now()).await? {
            Some(key) => {
                self.cache.invalidate(key.id);
                self.outbox.notify_one();
                Ok(Ok(key))
            }
            None => Ok(Err(vec![FieldViolation::key_not_found()])),
        }
    }
}
