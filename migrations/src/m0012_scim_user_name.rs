//! SCIM's `userName` as its own attribute: any string unique in the tenant
//! (compared without case, through `user_name_folded`), no longer the email
//! address. Users SCIM manages today keep their address as their userName.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    TenantId,
    UserName,
    UserNameFolded,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Users::UserName, Users::UserNameFolded] {
            let add = Table::alter().table(Users::Table).add_column(text_null(column).to_owned()).to_owned();
            manager.alter_table(add).await?;
        }
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE users SET user_name = email, user_name_folded = LOWER(email) \
                 WHERE scim_managed = TRUE AND deleted_at IS NULL",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_users_tenant_user_name")
                    .table(Users::Table)
                    .col(Users::TenantId)
                    .col(Users::UserNameFolded)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("ux_users_tenant_user_name").table(Users::Table).to_owned()).await?;
        for column in [Users::UserNameFolded, Users::UserName] {
            manager.alter_table(Table::alter().table(Users::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
