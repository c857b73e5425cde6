//! A tenant's external id: how the company's identity provider names it in
//! its tokens (OIDC sign-in finds a tenant by its id or by this), unique.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    ExternalId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Tenants::Table).add_column(text_null(Tenants::ExternalId)).to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_tenants_external_id")
                    .table(Tenants::Table)
                    .col(Tenants::ExternalId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("ux_tenants_external_id").table(Tenants::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Tenants::Table).drop_column(Tenants::ExternalId).to_owned()).await?;
        Ok(())
    }
}
