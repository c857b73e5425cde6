//! Tenants, users, API keys and the key-event outbox.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    TenantId,
    Email,
    Name,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    TenantId,
    OwnerId,
    Description,
    DescriptionFolded,
    LookupId,
    CredentialHash,
    CredentialVersion,
    LastFour,
    CreatedAt,
    CreatedBy,
    LastEditedAt,
    LastEditedBy,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum KeyEvents {
    Table,
    Id,
    TenantId,
    Kind,
    KeyId,
    KeyDescription,
    KeyLastFour,
    OwnerId,
    OwnerEmail,
    OwnerName,
    ActorId,
    ActorName,
    OccurredAt,
    Status,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    LastError,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(pk_uuid(Tenants::Id))
                    .col(string_len(Tenants::Name, 255))
                    .col(timestamp_with_time_zone(Tenants::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_uuid(Users::Id))
                    .col(uuid(Users::TenantId))
                    .col(string_len(Users::Email, 320))
                    .col(string_len(Users::Name, 255))
                    .col(string_len(Users::Role, 32))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_users_tenant")
                            .from(Users::Table, Users::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_users_tenant_email")
                    .table(Users::Table)
                    .col(Users::TenantId)
                    .col(Users::Email)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(pk_uuid(ApiKeys::Id))
                    .col(uuid(ApiKeys::TenantId))
                    .col(uuid(ApiKeys::OwnerId))
                    .col(text(ApiKeys::Description))
                    .col(text(ApiKeys::DescriptionFolded))
                    .col(string_len(ApiKeys::LookupId, 16))
                    .col(text(ApiKeys::CredentialHash))
                    .col(integer(ApiKeys::CredentialVersion).default(1))
                    .col(string_len(ApiKeys::LastFour, 4))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(uuid_null(ApiKeys::CreatedBy))
                    .col(timestamp_with_time_zone_null(ApiKeys::LastEditedAt))
                    .col(uuid_null(ApiKeys::LastEditedBy))
                    .col(timestamp_with_time_zone_null(ApiKeys::LastUsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_keys_tenant")
                            .from(ApiKeys::Table, ApiKeys::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_keys_owner")
                            .from(ApiKeys::Table, ApiKeys::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_keys_created_by")
                            .from(ApiKeys::Table, ApiKeys::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_keys_last_edited_by")
                            .from(ApiKeys::Table, ApiKeys::LastEditedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_api_keys_lookup_id")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::LookupId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The key table: newest first within a tenant (ids are UUID v7).
        manager
            .create_index(
                Index::create()
                    .name("ix_api_keys_tenant_id")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::TenantId)
                    .col(ApiKeys::Id)
                    .to_owned(),
            )
            .await?;
        // The key table filtered by owner.
        manager
            .create_index(
                Index::create()
                    .name("ix_api_keys_tenant_owner_id")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::TenantId)
                    .col(ApiKeys::OwnerId)
                    .col(ApiKeys::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(KeyEvents::Table)
                    .col(pk_uuid(KeyEvents::Id))
                    .col(uuid(KeyEvents::TenantId))
                    .col(string_len(KeyEvents::Kind, 16))
                    .col(uuid(KeyEvents::KeyId))
                    .col(text(KeyEvents::KeyDescription))
                    .col(string_len(KeyEvents::KeyLastFour, 4))
                    .col(uuid(KeyEvents::OwnerId))
                    .col(string_len(KeyEvents::OwnerEmail, 320))
                    .col(string_len(KeyEvents::OwnerName, 255))
                    .col(uuid(KeyEvents::ActorId))
                    .col(string_len(KeyEvents::ActorName, 255))
                    .col(timestamp_with_time_zone(KeyEvents::OccurredAt))
                    .col(string_len(KeyEvents::Status, 16).default("pending"))
                    .col(integer(KeyEvents::Attempts).default(0))
                    .col(timestamp_with_time_zone(KeyEvents::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(KeyEvents::LockedUntil))
                    .col(text_null(KeyEvents::LastError))
                    .col(timestamp_with_time_zone_null(KeyEvents::SentAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_key_events_tenant")
                            .from(KeyEvents::Table, KeyEvents::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The dispatcher's queue: due pending events.
        manager
            .create_index(
                Index::create()
                    .name("ix_key_events_status_due")
                    .table(KeyEvents::Table)
                    .col(KeyEvents::Status)
                    .col(KeyEvents::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(KeyEvents::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ApiKeys::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Users::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Tenants::Table).to_owned()).await?;
        Ok(())
    }
}
