//! Webhooks: each tenant's endpoints (with their signing secrets), one
//! delivery per event and endpoint (the webhook outbox, written in the
//! transaction of the change), and every attempt of a delivery.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    TenantId,
    Url,
    Description,
    EventTypes,
    Enabled,
    Secret,
    PreviousSecret,
    PreviousSecretUntil,
    CreatedAt,
    FailingSince,
    DisabledReason,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    TenantId,
    EndpointId,
    EventId,
    EventType,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    CreatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    DeliveryId,
    AttemptedAt,
    HttpStatus,
    DurationMs,
    ResponseBody,
    Error,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoints::Table)
                    .col(uuid(WebhookEndpoints::Id).primary_key())
                    .col(uuid(WebhookEndpoints::TenantId))
                    .col(text(WebhookEndpoints::Url))
                    .col(text(WebhookEndpoints::Description))
                    // Comma-separated; empty for every type.
                    .col(text(WebhookEndpoints::EventTypes))
                    .col(boolean(WebhookEndpoints::Enabled))
                    .col(text(WebhookEndpoints::Secret))
                    .col(text_null(WebhookEndpoints::PreviousSecret))
                    .col(timestamp_with_time_zone_null(WebhookEndpoints::PreviousSecretUntil))
                    .col(timestamp_with_time_zone(WebhookEndpoints::CreatedAt))
                    .col(timestamp_with_time_zone_null(WebhookEndpoints::FailingSince))
                    .col(text_null(WebhookEndpoints::DisabledReason))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookEndpoints::Table, WebhookEndpoints::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_endpoints_tenant")
                    .table(WebhookEndpoints::Table)
                    .col(WebhookEndpoints::TenantId)
                    .col(WebhookEndpoints::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(uuid(WebhookDeliveries::Id).primary_key())
                    .col(uuid(WebhookDeliveries::TenantId))
                    .col(uuid(WebhookDeliveries::EndpointId))
                    .col(uuid(WebhookDeliveries::EventId))
                    .col(string_len(WebhookDeliveries::EventType, 64))
                    .col(text(WebhookDeliveries::Payload))
                    .col(string_len(WebhookDeliveries::Status, 16))
                    .col(integer(WebhookDeliveries::Attempts))
                    .col(timestamp_with_time_zone(WebhookDeliveries::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(WebhookDeliveries::LockedUntil))
                    .col(timestamp_with_time_zone(WebhookDeliveries::CreatedAt))
                    .col(timestamp_with_time_zone_null(WebhookDeliveries::FinishedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::EndpointId)
                            .to(WebhookEndpoints::Table, WebhookEndpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("ix_webhook_deliveries_due", vec![WebhookDeliveries::Status, WebhookDeliveries::NextAttemptAt]),
            ("ix_webhook_deliveries_endpoint", vec![WebhookDeliveries::EndpointId, WebhookDeliveries::Id]),
            ("ix_webhook_deliveries_created", vec![WebhookDeliveries::CreatedAt]),
        ] {
            let mut index = Index::create();
            index.name(name).table(WebhookDeliveries::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempts::Table)
                    .col(uuid(WebhookAttempts::Id).primary_key())
                    .col(uuid(WebhookAttempts::DeliveryId))
                    .col(timestamp_with_time_zone(WebhookAttempts::AttemptedAt))
                    .col(integer_null(WebhookAttempts::HttpStatus))
                    .col(big_integer(WebhookAttempts::DurationMs))
                    .col(text(WebhookAttempts::ResponseBody))
                    .col(text_null(WebhookAttempts::Error))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookAttempts::Table, WebhookAttempts::DeliveryId)
                            .to(WebhookDeliveries::Table, WebhookDeliveries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_attempts_delivery")
                    .table(WebhookAttempts::Table)
                    .col(WebhookAttempts::DeliveryId)
                    .col(WebhookAttempts::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookAttempts::Table.into_iden(),
            WebhookDeliveries::Table.into_iden(),
            WebhookEndpoints::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
