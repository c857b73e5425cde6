//! Governance of keys: why a key is disabled, when an unused key was warned
//! and will be switched off (and when an admin last enabled it, which
//! restarts that clock), and rotation by the key itself.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    DisabledReason,
    EnabledAt,
    UnusedWarnedFor,
    UnusedDisableAt,
    SelfRotation,
    SelfRotatedAt,
    EndOverlapOnFirstUse,
}

const COLUMNS: [ApiKeys; 7] = [
    ApiKeys::DisabledReason,
    ApiKeys::EnabledAt,
    ApiKeys::UnusedWarnedFor,
    ApiKeys::UnusedDisableAt,
    ApiKeys::SelfRotation,
    ApiKeys::SelfRotatedAt,
    ApiKeys::EndOverlapOnFirstUse,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            text_null(ApiKeys::DisabledReason),
            timestamp_with_time_zone_null(ApiKeys::EnabledAt),
            timestamp_with_time_zone_null(ApiKeys::UnusedWarnedFor),
            timestamp_with_time_zone_null(ApiKeys::UnusedDisableAt),
            boolean(ApiKeys::SelfRotation).default(false).to_owned(),
            timestamp_with_time_zone_null(ApiKeys::SelfRotatedAt),
            boolean(ApiKeys::EndOverlapOnFirstUse).default(false).to_owned(),
        ];
        // SQLite adds one column per statement.
        for mut column in columns {
            let add = Table::alter().table(ApiKeys::Table).add_column(&mut column).to_owned();
            manager.alter_table(add).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in COLUMNS {
            manager.alter_table(Table::alter().table(ApiKeys::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
