//! Rate limits and credits: a key's own limits and credits, an owner's
//! shared limits, and the shared count of each limit's current window, which
//! replicas lease from.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    RateLimits,
    CreditsRemaining,
    CreditsAllotment,
    CreditsRefill,
    CreditsSince,
    CreditsRefilledAt,
    CreditsGeneration,
    CreditsLowMailedAt,
    CreditsEmptyMailedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    RateLimits,
}

#[derive(DeriveIden)]
enum RateLimitWindows {
    Table,
    SubjectId,
    Name,
    PeriodSeconds,
    WindowStart,
    Leased,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut key_columns = vec![
            text_null(ApiKeys::RateLimits),
            big_integer_null(ApiKeys::CreditsRemaining),
            big_integer_null(ApiKeys::CreditsAllotment),
            text_null(ApiKeys::CreditsRefill),
            timestamp_with_time_zone_null(ApiKeys::CreditsSince),
            timestamp_with_time_zone_null(ApiKeys::CreditsRefilledAt),
            timestamp_with_time_zone_null(ApiKeys::CreditsLowMailedAt),
            timestamp_with_time_zone_null(ApiKeys::CreditsEmptyMailedAt),
        ];
        key_columns.push(integer(ApiKeys::CreditsGeneration).default(0).to_owned());
        // SQLite adds one column per statement.
        for mut column in key_columns {
            let add = Table::alter().table(ApiKeys::Table).add_column(&mut column).to_owned();
            manager.alter_table(add).await?;
        }
        let add = Table::alter().table(Users::Table).add_column(text_null(Users::RateLimits)).to_owned();
        manager.alter_table(add).await?;
        // One row per limit (of a key or an owner) and window: how much of
        // the window replicas have taken.
        manager
            .create_table(
                Table::create()
                    .table(RateLimitWindows::Table)
                    .col(uuid(RateLimitWindows::SubjectId))
                    .col(string_len(RateLimitWindows::Name, 32))
                    .col(integer(RateLimitWindows::PeriodSeconds))
                    .col(big_integer(RateLimitWindows::WindowStart))
                    .col(big_integer(RateLimitWindows::Leased))
                    .primary_key(
                        Index::create()
                            .col(RateLimitWindows::SubjectId)
                            .col(RateLimitWindows::Name)
                            .col(RateLimitWindows::PeriodSeconds)
                            .col(RateLimitWindows::WindowStart),
                    )
                    .to_owned(),
            )
            .await?;
        // Past windows are dropped by their start.
        manager
            .create_index(
                Index::create()
                    .name("ix_rate_limit_windows_start")
                    .table(RateLimitWindows::Table)
                    .col(RateLimitWindows::WindowStart)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RateLimitWindows::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Users::Table).drop_column(Users::RateLimits).to_owned()).await?;
        for column in [
            ApiKeys::CreditsGeneration,
            ApiKeys::CreditsEmptyMailedAt,
            ApiKeys::CreditsLowMailedAt,
            ApiKeys::CreditsRefilledAt,
            ApiKeys::CreditsSince,
            ApiKeys::CreditsRefill,
            ApiKeys::CreditsAllotment,
            ApiKeys::CreditsRemaining,
            ApiKeys::RateLimits,
        ] {
            manager.alter_table(Table::alter().table(ApiKeys::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
