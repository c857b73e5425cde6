//! Users provisioned with SCIM: the identity provider's `externalId`, the
//! name's parts, when the user last changed and a version (the SCIM ETag),
//! and `deleted_at` for a user the provider deleted (kept, deactivated, so
//! the audit trail keeps its name).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    TenantId,
    ExternalId,
    GivenName,
    FamilyName,
    UpdatedAt,
    Version,
    DeletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        for column in [
            text_null(Users::ExternalId),
            text_null(Users::GivenName),
            text_null(Users::FamilyName),
            timestamp_with_time_zone_null(Users::UpdatedAt),
            integer(Users::Version).default(1).to_owned(),
            timestamp_with_time_zone_null(Users::DeletedAt),
        ] {
            let mut column = column;
            manager.alter_table(Table::alter().table(Users::Table).add_column(&mut column).to_owned()).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ix_users_tenant_external_id")
                    .table(Users::Table)
                    .col(Users::TenantId)
                    .col(Users::ExternalId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("ix_users_tenant_external_id").table(Users::Table).to_owned()).await?;
        for column in
            [Users::ExternalId, Users::GivenName, Users::FamilyName, Users::UpdatedAt, Users::Version, Users::DeletedAt]
        {
            manager.alter_table(Table::alter().table(Users::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
