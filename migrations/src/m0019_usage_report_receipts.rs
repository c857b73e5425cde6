//! Receipts of usage reports (`POST /v1/verifications/usage` with an
//! `Idempotency-Key`): a report retried after a lost answer is counted once.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsageReportReceipts {
    Table,
    ReporterKeyId,
    IdempotencyKey,
    ReportDigest,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageReportReceipts::Table)
                    .col(uuid(UsageReportReceipts::ReporterKeyId))
                    .col(string_len(UsageReportReceipts::IdempotencyKey, 255))
                    .col(string_len(UsageReportReceipts::ReportDigest, 64))
                    .col(timestamp_with_time_zone(UsageReportReceipts::ReceivedAt))
                    .primary_key(
                        Index::create().col(UsageReportReceipts::ReporterKeyId).col(UsageReportReceipts::IdempotencyKey),
                    )
                    .to_owned(),
            )
            .await?;
        // Retention drops old receipts by their time.
        manager
            .create_index(
                Index::create()
                    .name("ix_usage_report_receipts_received_at")
                    .table(UsageReportReceipts::Table)
                    .col(UsageReportReceipts::ReceivedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(UsageReportReceipts::Table).to_owned()).await
    }
}
