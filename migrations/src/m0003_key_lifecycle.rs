//! The key lifecycle: expiry (with the stage of its notices), disable, and a
//! previous secret kept through a rotation's overlap. Every column is
//! nullable or defaulted, so existing keys keep working unchanged. SQLite
//! adds one column per statement.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    ExpiresAt,
    ExpiryNoticeStage,
    DisabledAt,
    PreviousLookupId,
    PreviousCredentialHash,
    PreviousLastFour,
    PreviousExpiresAt,
}

#[derive(DeriveIden)]
enum KeyEvents {
    Table,
    KeyExpiresAt,
    PreviousSecretExpiresAt,
}

#[derive(DeriveIden)]
enum KeyAudit {
    Table,
    PreviousSecretExpiresAt,
    OldExpiresAt,
    NewExpiresAt,
}

async fn add_column(manager: &SchemaManager<'_>, table: impl IntoIden, column: ColumnDef) -> Result<(), DbErr> {
    let mut column = column;
    manager.alter_table(Table::alter().table(table).add_column(&mut column).to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_column(manager, ApiKeys::Table, timestamp_with_time_zone_null(ApiKeys::ExpiresAt)).await?;
        add_column(manager, ApiKeys::Table, small_integer(ApiKeys::ExpiryNoticeStage).default(0).to_owned()).await?;
        add_column(manager, ApiKeys::Table, timestamp_with_time_zone_null(ApiKeys::DisabledAt)).await?;
        add_column(manager, ApiKeys::Table, string_len_null(ApiKeys::PreviousLookupId, 16)).await?;
        add_column(manager, ApiKeys::Table, text_null(ApiKeys::PreviousCredentialHash)).await?;
        add_column(manager, ApiKeys::Table, string_len_null(ApiKeys::PreviousLastFour, 4)).await?;
        add_column(manager, ApiKeys::Table, timestamp_with_time_zone_null(ApiKeys::PreviousExpiresAt)).await?;
        add_column(manager, KeyEvents::Table, timestamp_with_time_zone_null(KeyEvents::KeyExpiresAt)).await?;
        add_column(manager, KeyEvents::Table, timestamp_with_time_zone_null(KeyEvents::PreviousSecretExpiresAt))
            .await?;
        add_column(manager, KeyAudit::Table, timestamp_with_time_zone_null(KeyAudit::PreviousSecretExpiresAt)).await?;
        add_column(manager, KeyAudit::Table, timestamp_with_time_zone_null(KeyAudit::OldExpiresAt)).await?;
        add_column(manager, KeyAudit::Table, timestamp_with_time_zone_null(KeyAudit::NewExpiresAt)).await?;
        // A previous secret is found by its lookup id, like a current one.
        manager
            .create_index(
                Index::create()
                    .name("ux_api_keys_previous_lookup_id")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::PreviousLookupId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The expiry scheduler scans keys by expiry.
        manager
            .create_index(
                Index::create().name("ix_api_keys_expires_at").table(ApiKeys::Table).col(ApiKeys::ExpiresAt).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("ix_api_keys_expires_at").table(ApiKeys::Table).to_owned()).await?;
        manager
            .drop_index(Index::drop().name("ux_api_keys_previous_lookup_id").table(ApiKeys::Table).to_owned())
            .await?;
        let drops: [(DynIden, DynIden); 12] = [
            (ApiKeys::Table.into_iden(), ApiKeys::ExpiresAt.into_iden()),
            (ApiKeys::Table.into_iden(), ApiKeys::ExpiryNoticeStage.into_iden()),
            (ApiKeys::Table.into_iden(), ApiKeys::DisabledAt.into_iden()),
            (ApiKeys::Table.into_iden(), ApiKeys::PreviousLookupId.into_iden()),
            (ApiKeys::Table.into_iden(), ApiKeys::PreviousCredentialHash.into_iden()),
            (ApiKeys::Table.into_iden(), ApiKeys::PreviousLastFour.into_iden()),
            (ApiKeys::Table.into_iden(), ApiKeys::PreviousExpiresAt.into_iden()),
            (KeyEvents::Table.into_iden(), KeyEvents::KeyExpiresAt.into_iden()),
            (KeyEvents::Table.into_iden(), KeyEvents::PreviousSecretExpiresAt.into_iden()),
            (KeyAudit::Table.into_iden(), KeyAudit::PreviousSecretExpiresAt.into_iden()),
            (KeyAudit::Table.into_iden(), KeyAudit::OldExpiresAt.into_iden()),
            (KeyAudit::Table.into_iden(), KeyAudit::NewExpiresAt.into_iden()),
        ];
        for (table, column) in drops {
            manager.alter_table(Table::alter().table(table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
