//! Keys imported from another system keep their original format: they are
//! found by `import_lookup` (`prefix:…`, `sha256:…` or `sha512:…`), and
//! during a rotation's overlap by `previous_import_lookup`. Both unique.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ApiKeys {
    Table,
    ImportLookup,
    PreviousImportLookup,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (column, index) in [
            (ApiKeys::ImportLookup, "ux_api_keys_import_lookup"),
            (ApiKeys::PreviousImportLookup, "ux_api_keys_previous_import_lookup"),
        ] {
            manager.alter_table(Table::alter().table(ApiKeys::Table).add_column(text_null(column)).to_owned()).await?;
            manager
                .create_index(Index::create().name(index).table(ApiKeys::Table).col(column).unique().to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (column, index) in [
            (ApiKeys::ImportLookup, "ux_api_keys_import_lookup"),
            (ApiKeys::PreviousImportLookup, "ux_api_keys_previous_import_lookup"),
        ] {
            manager.drop_index(Index::drop().name(index).table(ApiKeys::Table).to_owned()).await?;
            manager.alter_table(Table::alter().table(ApiKeys::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
