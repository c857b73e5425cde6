//! The key table at ten million keys a tenant: an index for each order a
//! page can be read in, so that a page, however deep, is one index range
//! from its cursor; an index for the sweep that forgets previous secrets
//! (it read every key, 1.6 s at eleven million); and, on PostgreSQL, a
//! trigram index for searching descriptions (`LIKE '%term%'`), where the
//! extension may be created. The `USAGE_30D` order sums usage per key, which
//! no index can order: each key keeps its sum in `usage_30d`, maintained by
//! the usage flush for the window `usage_window` holds (see the store's
//! `usage` module), indexed like the other orders.
//!
//! Each index is created `IF NOT EXISTS`: on a large table, build them
//! beforehand with `CREATE INDEX CONCURRENTLY` under the same names (see
//! docs/operations.md, "Migrations"), and this migration finds them there;
//! the column `usage_30d` too is added only if missing, on PostgreSQL.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    #[sea_orm(iden = "usage_30d")]
    Usage30d,
}

/// One row: the first day `api_keys.usage_30d` counts (none before the first flush).
#[derive(DeriveIden)]
enum UsageWindow {
    Table,
    Id,
    StartsAt,
}

/// Keys with a value, in (value, id) order; keys without one (last in
/// either direction), in id order; previous secrets by when they end.
const ORDER_INDEXES: [(&str, &str); 6] = [
    ("ix_api_keys_tenant_expires_at", "ON api_keys (tenant_id, expires_at, id)"),
    ("ix_api_keys_tenant_never_expiring", "ON api_keys (tenant_id, id) WHERE expires_at IS NULL"),
    ("ix_api_keys_tenant_last_used_at", "ON api_keys (tenant_id, last_used_at, id)"),
    ("ix_api_keys_tenant_never_used", "ON api_keys (tenant_id, id) WHERE last_used_at IS NULL"),
    ("ix_api_keys_tenant_usage_30d", "ON api_keys (tenant_id, usage_30d, id)"),
    ("ix_api_keys_previous_expires_at", "ON api_keys (previous_expires_at) WHERE previous_expires_at IS NOT NULL"),
];

/// Creates pg_trgm unless this role may not (a managed database that lists
/// extensions), then the trigram index when the extension is there.
const TRIGRAM_INDEX: &str = "
DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN
        RAISE WARNING 'pg_trgm cannot be created here: searching descriptions reads every key of the tenant';
    END;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        EXECUTE 'CREATE INDEX IF NOT EXISTS ix_api_keys_description_trigrams ON api_keys '
             || 'USING gin (description_folded ' || (SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm') || '.gin_trgm_ops)';
    END IF;
END
$$";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // An operator may have added the column beforehand, to index it concurrently.
        let mut usage = big_integer(ApiKeys::Usage30d).default(0).to_owned();
        let mut add = Table::alter().table(ApiKeys::Table).to_owned();
        match manager.get_database_backend() {
            DbBackend::Postgres => add.add_column_if_not_exists(&mut usage),
            _ => add.add_column(&mut usage),
        };
        manager.alter_table(add).await?;
        let window = Table::create()
            .table(UsageWindow::Table)
            .col(integer(UsageWindow::Id).primary_key())
            .col(timestamp_with_time_zone_null(UsageWindow::StartsAt))
            .to_owned();
        manager.create_table(window).await?;
        // No window yet: the first flush sums every key's usage (see `Store::advance_usage_window`).
        let db = manager.get_connection();
        db.execute_unprepared("INSERT INTO usage_window (id) VALUES (1)").await?;
        for (name, definition) in ORDER_INDEXES {
            db.execute_unprepared(&format!("CREATE INDEX IF NOT EXISTS {name} {definition}")).await?;
        }
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(TRIGRAM_INDEX).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _) in ORDER_INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}")).await?;
        }
        db.execute_unprepared("DROP INDEX IF EXISTS ix_api_keys_description_trigrams").await?;
        manager.drop_table(Table::drop().table(UsageWindow::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(ApiKeys::Table).drop_column(ApiKeys::Usage30d).to_owned()).await?;
        Ok(())
    }
}
