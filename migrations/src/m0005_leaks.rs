//! Leak response: a key reported leaked (`compromised_at`), what the tenant
//! wants done (`leak_response`: revoke or notify), the reports themselves
//! (one per key and leaked token: retries of a report change nothing), and
//! where a leak was found in the outbox and the audit trail.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    CompromisedAt,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    LeakResponse,
}

#[derive(DeriveIden)]
enum KeyEvents {
    Table,
    LeakSource,
    LeakUrl,
    LeakRevoked,
}

#[derive(DeriveIden)]
enum KeyAudit {
    Table,
    LeakSource,
    LeakUrl,
    LeakRevoked,
}

#[derive(DeriveIden)]
enum LeakReports {
    Table,
    Id,
    KeyId,
    TokenDigest,
    Source,
    Url,
    ReportedAt,
}

/// The new nullable columns, with their tables.
fn columns() -> [(DynIden, ColumnDef); 7] {
    [
        (ApiKeys::Table.into_iden(), timestamp_with_time_zone_null(ApiKeys::CompromisedAt)),
        (KeyEvents::Table.into_iden(), text_null(KeyEvents::LeakSource)),
        (KeyEvents::Table.into_iden(), text_null(KeyEvents::LeakUrl)),
        (KeyEvents::Table.into_iden(), boolean_null(KeyEvents::LeakRevoked)),
        (KeyAudit::Table.into_iden(), text_null(KeyAudit::LeakSource)),
        (KeyAudit::Table.into_iden(), text_null(KeyAudit::LeakUrl)),
        (KeyAudit::Table.into_iden(), boolean_null(KeyAudit::LeakRevoked)),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        for (table, column) in columns() {
            manager.alter_table(Table::alter().table(table).add_column(column).to_owned()).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(string_len(Tenants::LeakResponse, 16).default("revoke"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LeakReports::Table)
                    .col(pk_uuid(LeakReports::Id))
                    .col(uuid(LeakReports::KeyId))
                    .col(string_len(LeakReports::TokenDigest, 64))
                    .col(text(LeakReports::Source))
                    .col(text_null(LeakReports::Url))
                    .col(timestamp_with_time_zone(LeakReports::ReportedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_leak_reports_key_token")
                    .table(LeakReports::Table)
                    .col(LeakReports::KeyId)
                    .col(LeakReports::TokenDigest)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(LeakReports::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Tenants::Table).drop_column(Tenants::LeakResponse).to_owned()).await?;
        for (table, column) in columns() {
            let name = column.get_column_name();
            manager.alter_table(Table::alter().table(table).drop_column(Alias::new(name)).to_owned()).await?;
        }
        Ok(())
    }
}
