//! Key restrictions: permissions, clouds and allowed networks, all nullable
//! (null = unrestricted, which every existing key stays), and the before and
//! after of a restriction change in the outbox and the audit trail.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Permissions,
    Clouds,
    AllowedIps,
}

#[derive(DeriveIden)]
enum KeyEvents {
    Table,
    Kind,
    RestrictionsBefore,
    RestrictionsAfter,
}

#[derive(DeriveIden)]
enum KeyAudit {
    Table,
    RestrictionsBefore,
    RestrictionsAfter,
}

/// The new columns, all nullable text, with their tables.
fn columns() -> [(DynIden, DynIden); 7] {
    [
        (ApiKeys::Table.into_iden(), ApiKeys::Permissions.into_iden()),
        (ApiKeys::Table.into_iden(), ApiKeys::Clouds.into_iden()),
        (ApiKeys::Table.into_iden(), ApiKeys::AllowedIps.into_iden()),
        (KeyEvents::Table.into_iden(), KeyEvents::RestrictionsBefore.into_iden()),
        (KeyEvents::Table.into_iden(), KeyEvents::RestrictionsAfter.into_iden()),
        (KeyAudit::Table.into_iden(), KeyAudit::RestrictionsBefore.into_iden()),
        (KeyAudit::Table.into_iden(), KeyAudit::RestrictionsAfter.into_iden()),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        for (table, column) in columns() {
            manager.alter_table(Table::alter().table(table).add_column(text_null(column)).to_owned()).await?;
        }
        // `restrictions_changed` is longer than the 16 characters kinds had.
        // SQLite does not enforce lengths (nor alter columns).
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            manager
                .alter_table(
                    Table::alter().table(KeyEvents::Table).modify_column(string_len(KeyEvents::Kind, 32)).to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column) in columns() {
            manager.alter_table(Table::alter().table(table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
