//! Usage of keys: counts per key and per tenant, by hour and by day, per
//! outcome (written by each replica's flush, added to what is there), and
//! the details of a key's last successful verification.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KeyUsage {
    Table,
    KeyId,
    TenantId,
    BucketSeconds,
    PeriodStart,
    Outcome,
    Count,
}

#[derive(DeriveIden)]
enum TenantUsage {
    Table,
    TenantId,
    BucketSeconds,
    PeriodStart,
    Outcome,
    Count,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    LastUsedCloud,
    LastUsedAddress,
    LastUsedUserAgent,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KeyUsage::Table)
                    .col(uuid(KeyUsage::KeyId))
                    .col(uuid(KeyUsage::TenantId))
                    .col(integer(KeyUsage::BucketSeconds))
                    .col(timestamp_with_time_zone(KeyUsage::PeriodStart))
                    .col(string_len(KeyUsage::Outcome, 32))
                    .col(big_integer(KeyUsage::Count))
                    .primary_key(
                        Index::create()
                            .col(KeyUsage::KeyId)
                            .col(KeyUsage::BucketSeconds)
                            .col(KeyUsage::PeriodStart)
                            .col(KeyUsage::Outcome),
                    )
                    .to_owned(),
            )
            .await?;
        // Retention drops old buckets by their start.
        manager
            .create_index(
                Index::create()
                    .name("ix_key_usage_bucket_start")
                    .table(KeyUsage::Table)
                    .col(KeyUsage::BucketSeconds)
                    .col(KeyUsage::PeriodStart)
                    .to_owned(),
            )
            .await?;
        // The key table's recent-usage order sums a tenant's day rows at once.
        manager
            .create_index(
                Index::create()
                    .name("ix_key_usage_tenant_bucket_start")
                    .table(KeyUsage::Table)
                    .col(KeyUsage::TenantId)
                    .col(KeyUsage::BucketSeconds)
                    .col(KeyUsage::PeriodStart)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TenantUsage::Table)
                    .col(uuid(TenantUsage::TenantId))
                    .col(integer(TenantUsage::BucketSeconds))
                    .col(timestamp_with_time_zone(TenantUsage::PeriodStart))
                    .col(string_len(TenantUsage::Outcome, 32))
                    .col(big_integer(TenantUsage::Count))
                    .primary_key(
                        Index::create()
                            .col(TenantUsage::TenantId)
                            .col(TenantUsage::BucketSeconds)
                            .col(TenantUsage::PeriodStart)
                            .col(TenantUsage::Outcome),
                    )
                    .to_owned(),
            )
            .await?;
        for column in [ApiKeys::LastUsedCloud, ApiKeys::LastUsedAddress, ApiKeys::LastUsedUserAgent] {
            let add = Table::alter().table(ApiKeys::Table).add_column(text_null(column).to_owned()).to_owned();
            manager.alter_table(add).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [ApiKeys::LastUsedUserAgent, ApiKeys::LastUsedAddress, ApiKeys::LastUsedCloud] {
            manager.alter_table(Table::alter().table(ApiKeys::Table).drop_column(column).to_owned()).await?;
        }
        manager.drop_table(Table::drop().table(TenantUsage::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(KeyUsage::Table).to_owned()).await?;
        Ok(())
    }
}
