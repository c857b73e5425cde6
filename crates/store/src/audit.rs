//! The audit trail: appended in the transaction of every key change, read
//! newest first, tenant-scoped. It outlives the keys it describes.

use latchkey_domain::{ApiKeyId, AuditAction, AuditEntry, LeakReport, TenantId, UserId};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};
use uuid::Uuid;

use crate::entities::key_audit;
use crate::{Store, StoreError, StoreResult, storable};

/// A page of the audit trail.
#[derive(Clone, Debug)]
pub struct AuditPage {
    /// Entries, newest first.
    pub entries: Vec<AuditEntry>,
    /// Whether older entries remain.
    pub has_next_page: bool,
    /// All entries matching the filter.
    pub total_count: u64,
}

pub(crate) async fn insert_audit<C: ConnectionTrait>(conn: &C, entry: &AuditEntry) -> StoreResult<()> {
    key_audit::ActiveModel {
        id: Set(entry.id),
        tenant_id: Set(entry.tenant_id.0),
        key_id: Set(entry.key_id.0),
        action: Set(entry.action.as_str().to_owned()),
        actor_id: Set(entry.actor_id.0),
        actor_name: Set(entry.actor_name.clone()),
        occurred_at: Set(storable(entry.occurred_at)),
        key_description: Set(entry.key_description.clone()),
        key_last_four: Set(entry.key_last_four.clone()),
        old_description: Set(entry.old_description.clone()),
        new_description: Set(entry.new_description.clone()),
        previous_secret_expires_at: Set(entry.previous_secret_expires_at.map(storable)),
        old_expires_at: Set(entry.old_expires_at.map(storable)),
        new_expires_at: Set(entry.new_expires_at.map(storable)),
        restrictions_before: Set(entry.restrictions_change.as_ref().map(|(before, _)| before.clone())),
        restrictions_after: Set(entry.restrictions_change.as_ref().map(|(_, after)| after.clone())),
        leak_source: Set(entry.leak.as_ref().and_then(|l| l.source.clone())),
        leak_url: Set(entry.leak.as_ref().and_then(|l| l.url.clone())),
        leak_revoked: Set(entry.leak.as_ref().map(|l| l.revoked)),
        owner_before: Set(entry.owner_change.as_ref().map(|(before, _)| before.clone())),
        owner_after: Set(entry.owner_change.as_ref().map(|(_, after)| after.clone())),
    }
    .insert(conn)
    .await?;
    Ok(())
}

fn entry_from(m: key_audit::Model) -> StoreResult<AuditEntry> {
    let action = AuditAction::parse(&m.action)
        .ok_or_else(|| StoreError::Corrupt(format!("audit entry {} action {:?}", m.id, m.action)))?;
    Ok(AuditEntry {
        id: m.id,
        tenant_id: TenantId(m.tenant_id),
        key_id: ApiKeyId(m.key_id),
        action,
        actor_id: UserId(m.actor_id),
        actor_name: m.actor_name.clone(),
        occurred_at: m.occurred_at,
        key_description: m.key_description,
        key_last_four: m.key_last_four,
        old_description: m.old_description,
        new_description: m.new_description,
        previous_secret_expires_at: m.previous_secret_expires_at,
        old_expires_at: m.old_expires_at,
        new_expires_at: m.new_expires_at,
        restrictions_change: m.restrictions_before.zip(m.restrictions_after),
        owner_change: m.owner_before.zip(m.owner_after),
        leak: m.leak_revoked.map(|revoked| LeakReport {
            reporter: m.actor_name,
            url: m.leak_url,
            source: m.leak_source,
            revoked,
        }),
    })
}

impl Store {
    /// The tenant's audit trail (optionally of one key), newest first.
    pub async fn list_audit(
        &self,
        tenant: TenantId,
        key: Option<ApiKeyId>,
        first: u64,
        after: Option<Uuid>,
    ) -> StoreResult<AuditPage> {
        let mut select = key_audit::Entity::find().filter(key_audit::Column::TenantId.eq(tenant.0));
        if let Some(key) = key {
            select = select.filter(key_audit::Column::KeyId.eq(key.0));
        }
        let total_count = select.clone().count(self.conn()).await?;
        if let Some(after) = after {
            select = select.filter(key_audit::Column::Id.lt(after));
        }
        let mut rows =
            select.order_by_desc(key_audit::Column::Id).limit(first.saturating_add(1)).all(self.conn()).await?;
        let has_next_page = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        let entries = rows.into_iter().map(entry_from).collect::<StoreResult<_>>()?;
        Ok(AuditPage { entries, has_next_page, total_count })
    }
}
