//! Tenants, users, roles, clouds, API keys and key events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, KeyEventId, TenantId, UserId};

/// The two clouds of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// The company's own staff.
    Employee,
    /// The academies of the company's customers.
    Customer,
}

impl Cloud {
    /// Both clouds, in a stable order.
    pub const ALL: [Cloud; 2] = [Cloud::Employee, Cloud::Customer];

    /// The lowercase wire name (`employee`, `customer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Employee => "employee",
            Cloud::Customer => "customer",
        }
    }

    /// Parses the lowercase wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "employee" => Some(Cloud::Employee),
            "customer" => Some(Cloud::Customer),
            _ => None,
        }
    }
}

/// A user's role within its tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Administrator of the employee cloud; manages API keys.
    InternalAdmin,
    /// Administrator of the customer cloud (academies).
    AcademyAdmin,
    /// A service account that owns keys for an integration.
    IntegrationUser,
}

impl Role {
    /// The stable storage / CLI name (`internal-admin`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::InternalAdmin => "internal-admin",
            Role::AcademyAdmin => "academy-admin",
            Role::IntegrationUser => "integration-user",
        }
    }

    /// Parses the storage / CLI name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "internal-admin" => Some(Role::InternalAdmin),
            "academy-admin" => Some(Role::AcademyAdmin),
            "integration-user" => Some(Role::IntegrationUser),
            _ => None,
        }
    }
}

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its display name.
    pub name: String,
}

/// A user of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Where owner notices are sent.
    pub email: String,
    /// Display name.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// An API key as the key table shows it. Never carries the secret or its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// Stable id (UUID v7, so id order is creation order).
    pub id: ApiKeyId,
    /// The tenant the key belongs to.
    pub tenant_id: TenantId,
    /// The user the key acts for.
    pub owner_id: UserId,
    /// What the key is for.
    pub description: String,
    /// The last four characters of the current secret.
    pub last_four: String,
    /// When the key was created.
    pub created_at: DateTime<Utc>,
    /// Who created it (none for keys imported from before key management).
    pub created_by: Option<UserId>,
    /// When it was last generated, rotated or edited; none for legacy keys.
    pub last_edited_at: Option<DateTime<Utc>>,
    /// Who last edited it; none for legacy keys.
    pub last_edited_by: Option<UserId>,
    /// When an integration last authenticated with it.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What happened to a key; each kind is mailed to the key's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEventKind {
    /// A new key was generated.
    Generated,
    /// The key's secret was replaced.
    Rotated,
    /// The key was deleted.
    Deleted,
}

impl KeyEventKind {
    /// The past-tense word used in storage and in mail ("generated", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyEventKind::Generated => "generated",
            KeyEventKind::Rotated => "rotated",
            KeyEventKind::Deleted => "deleted",
        }
    }

    /// Parses the storage word.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "generated" => Some(KeyEventKind::Generated),
            "rotated" => Some(KeyEventKind::Rotated),
            "deleted" => Some(KeyEventKind::Deleted),
            _ => None,
        }
    }
}

/// A key event, snapshotting what the owner must be told even after the key
/// itself is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEvent {
    /// Event id (UUID v7).
    pub id: KeyEventId,
    /// What happened.
    pub kind: KeyEventKind,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The key it happened to.
    pub key_id: ApiKeyId,
    /// The key's description at the time.
    pub key_description: String,
    /// The key's last four at the time (after a rotate: the new last four).
    pub key_last_four: String,
    /// The owner who is told.
    pub owner_id: UserId,
    /// The owner's address at the time.
    pub owner_email: String,
    /// The owner's name at the time.
    pub owner_name: String,
    /// Who did it.
    pub actor_id: UserId,
    /// The actor's name at the time.
    pub actor_name: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
}

impl KeyEvent {
    /// Builds the event for `kind` on `key`, owned by `owner`, done by `actor` at `at`.
    pub fn new(kind: KeyEventKind, key: &ApiKey, owner: &User, actor: &User, at: DateTime<Utc>) -> Self {
        KeyEvent {
            id: KeyEventId::new_at(at),
            kind,
            tenant_id: key.tenant_id,
            key_id: key.id,
            key_description: key.description.clone(),
            key_last_four: key.last_four.clone(),
            owner_id: owner.id,
            owner_email: owner.email.clone(),
            owner_name: owner.name.clone(),
            actor_id: actor.id,
            actor_name: actor.name.clone(),
            occurred_at: at,
        }
    }
}

/// What an audit entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// The key was generated.
    Generated,
    /// The key's secret was replaced.
    Rotated,
    /// The key's description changed.
    DescriptionChanged,
    /// The key was deleted.
    Deleted,
}

impl AuditAction {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Generated => "generated",
            AuditAction::Rotated => "rotated",
            AuditAction::DescriptionChanged => "description_changed",
            AuditAction::Deleted => "deleted",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "generated" => Some(AuditAction::Generated),
            "rotated" => Some(AuditAction::Rotated),
            "description_changed" => Some(AuditAction::DescriptionChanged),
            "deleted" => Some(AuditAction::Deleted),
            _ => None,
        }
    }
}

/// One entry of the audit trail of a tenant's keys. Outlives the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Entry id (UUID v7: id order is time order).
    pub id: uuid::Uuid,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The key.
    pub key_id: ApiKeyId,
    /// What happened.
    pub action: AuditAction,
    /// Who did it.
    pub actor_id: UserId,
    /// The actor's name at the time.
    pub actor_name: String,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// The key's description after the change (before it, for a deletion).
    pub key_description: String,
    /// The key's last four after the change.
    pub key_last_four: String,
    /// For a description change: the old description.
    pub old_description: Option<String>,
    /// For a description change: the new description.
    pub new_description: Option<String>,
}

impl AuditEntry {
    /// The entry for `action` on `key` by `actor` at `at`.
    pub fn new(action: AuditAction, key: &ApiKey, actor: &User, at: DateTime<Utc>) -> Self {
        AuditEntry {
            id: crate::ids::time_ordered_uuid(at),
            tenant_id: key.tenant_id,
            key_id: key.id,
            action,
            actor_id: actor.id,
            actor_name: actor.name.clone(),
            occurred_at: at,
            key_description: key.description.clone(),
            key_last_four: key.last_four.clone(),
            old_description: None,
            new_description: None,
        }
    }
}
