//! The audit trail: appended in the transaction of every key change, read
//! newest first, tenant-scoped. It outlives the keys it describes.

use latchkey_domain::{ApiKeyId, AuditChange, AuditEntry, TenantId, UserId};
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
    let details = serde_json::to_string(&entry.change)
        .map_err(|e| StoreError::Corrupt(format!("audit entry {} not serialisable: {e}", entry.id)))?;
    key_audit::ActiveModel {
        id: Set(entry.id),
        tenant_id: Set(entry.tenant_id.0),
        key_id: Set(entry.key_id.0),
        action: Set(entry.action().as_str().to_owned()),
        actor_id: Set(entry.actor_id.0),
        actor_name: Set(entry.actor_name.clone()),
        occurred_at: Set(storable(entry.occurred_at)),
        key_description: Set(entry.key_description.clone()),
        key_last_four: Set(entry.key_last_four.clone()),
        details: Set(Some(details)),
    }
    .insert(conn)
    .await?;
    Ok(())
}

fn entry_from(m: key_audit::Model) -> StoreResult<AuditEntry> {
    let change: AuditChange = m
        .details
        .as_deref()
        .and_then(|details| serde_json::from_str(details).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("audit entry {} details {:?}", m.id, m.details)))?;
    Ok(AuditEntry {
        id: m.id,
        tenant_id: TenantId(m.tenant_id),
        key_id: ApiKeyId(m.key_id),
        actor_id: UserId(m.actor_id),
        actor_name: m.actor_name,
        occurred_at: m.occurred_at,
        key_description: m.key_description,
        key_last_four: m.key_last_four,
        change,
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
        let conn = if self.standby.is_some() { self.list_reader() } else { self.conn() };
        let total_count = select.clone().count(conn).await?;
        if let Some(after) = after {
            select = select.filter(key_audit::Column::Id.lt(after));
        }
        let mut rows = select.order_by_desc(key_audit::Column::Id).limit(first.saturating_add(1)).all(conn).await?;
        let has_next_page = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        let entries = rows.into_iter().map(entry_from).collect::<StoreResult<_>>()?;
        Ok(AuditPage { entries, has_next_page, total_count })
    }
}
