//! What the second hardening round needs to remember:
//! * `imported_credentials`: every credential an import ever wrote (its
//!   lookup, the identity of what was imported), so running an import
//!   again never brings back a key that was rotated away or deleted;
//!   filled from the keys from before key management there are now.
//! * `users.scim_managed`: users SCIM provisioned or an admin linked; SCIM
//!   changes no one else. Users with an external id now are SCIM's.
//! * `tenants.scim_may_grant_internal_admin`: whether SCIM may make internal
//!   admins in the tenant (default: no).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ImportedCredentials {
    Table,
    Lookup,
    TenantId,
    KeyId,
    ImportedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    ScimManaged,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    ScimMayGrantInternalAdmin,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ImportedCredentials::Table)
                    .col(text(ImportedCredentials::Lookup).primary_key())
                    .col(uuid(ImportedCredentials::TenantId))
                    .col(uuid(ImportedCredentials::KeyId))
                    .col(timestamp_with_time_zone(ImportedCredentials::ImportedAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO imported_credentials (lookup, tenant_id, key_id, imported_at) \
             SELECT COALESCE(import_lookup, lookup_id), tenant_id, id, created_at FROM api_keys \
             WHERE import_lookup IS NOT NULL OR created_by IS NULL",
        )
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(boolean(Users::ScimManaged).default(false).to_owned())
                    .to_owned(),
            )
            .await?;
        db.execute_unprepared("UPDATE users SET scim_managed = TRUE WHERE external_id IS NOT NULL").await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(boolean(Tenants::ScimMayGrantInternalAdmin).default(false).to_owned())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Tenants::Table).drop_column(Tenants::ScimMayGrantInternalAdmin).to_owned(),
            )
            .await?;
        manager.alter_table(Table::alter().table(Users::Table).drop_column(Users::ScimManaged).to_owned()).await?;
        manager.drop_table(Table::drop().table(ImportedCredentials::Table).to_owned()).await?;
        Ok(())
    }
}
