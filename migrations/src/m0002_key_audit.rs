//! The audit trail of key changes. No foreign key to `api_keys`: the trail
//! outlives the key.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KeyAudit {
    Table,
    Id,
    TenantId,
    KeyId,
    Action,
    ActorId,
    ActorName,
    OccurredAt,
    KeyDescription,
    KeyLastFour,
    OldDescription,
    NewDescription,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KeyAudit::Table)
                    .col(pk_uuid(KeyAudit::Id))
                    .col(uuid(KeyAudit::TenantId))
                    .col(uuid(KeyAudit::KeyId))
                    .col(string_len(KeyAudit::Action, 32))
                    .col(uuid(KeyAudit::ActorId))
                    .col(string_len(KeyAudit::ActorName, 255))
                    .col(timestamp_with_time_zone(KeyAudit::OccurredAt))
                    .col(text(KeyAudit::KeyDescription))
                    .col(string_len(KeyAudit::KeyLastFour, 4))
                    .col(text_null(KeyAudit::OldDescription))
                    .col(text_null(KeyAudit::NewDescription))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_key_audit_tenant")
                            .from(KeyAudit::Table, KeyAudit::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_key_audit_tenant_id")
                    .table(KeyAudit::Table)
                    .col(KeyAudit::TenantId)
                    .col(KeyAudit::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_key_audit_tenant_key_id")
                    .table(KeyAudit::Table)
                    .col(KeyAudit::TenantId)
                    .col(KeyAudit::KeyId)
                    .col(KeyAudit::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(KeyAudit::Table).to_owned()).await
    }
}
