//! Owners come and go: a user may be deactivated (`users.deactivated_at`),
//! which suspends the keys it owns (the admins' notice names the user and
//! lists the keys: `suspended_user_id`, `suspended_user_name`,
//! `suspended_keys`), and a key may be given to another owner
//! (`owner_before`/`owner_after` in the outbox and the audit trail, the two
//! owners' names at the time).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    DeactivatedAt,
}

#[derive(DeriveIden)]
enum KeyEvents {
    Table,
    OwnerBefore,
    OwnerAfter,
    SuspendedUserId,
    SuspendedUserName,
    SuspendedKeys,
}

#[derive(DeriveIden)]
enum KeyAudit {
    Table,
    OwnerBefore,
    OwnerAfter,
}

/// The new text columns, all nullable, with their tables.
fn owner_columns() -> [(DynIden, DynIden); 6] {
    [
        (KeyEvents::Table.into_iden(), KeyEvents::OwnerBefore.into_iden()),
        (KeyEvents::Table.into_iden(), KeyEvents::OwnerAfter.into_iden()),
        (KeyEvents::Table.into_iden(), KeyEvents::SuspendedUserName.into_iden()),
        (KeyEvents::Table.into_iden(), KeyEvents::SuspendedKeys.into_iden()),
        (KeyAudit::Table.into_iden(), KeyAudit::OwnerBefore.into_iden()),
        (KeyAudit::Table.into_iden(), KeyAudit::OwnerAfter.into_iden()),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(timestamp_with_time_zone_null(Users::DeactivatedAt))
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per statement.
        for (table, column) in owner_columns() {
            manager.alter_table(Table::alter().table(table).add_column(text_null(column)).to_owned()).await?;
        }
        manager
            .alter_table(
                Table::alter().table(KeyEvents::Table).add_column(uuid_null(KeyEvents::SuspendedUserId)).to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(KeyEvents::Table).drop_column(KeyEvents::SuspendedUserId).to_owned())
            .await?;
        for (table, column) in owner_columns() {
            manager.alter_table(Table::alter().table(table).drop_column(column).to_owned()).await?;
        }
        manager.alter_table(Table::alter().table(Users::Table).drop_column(Users::DeactivatedAt).to_owned()).await?;
        Ok(())
    }
}
