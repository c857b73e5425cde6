//! Latchkey's database schema, as ordered sea-orm migrations. Every table,
//! index and constraint lives here; nothing is created from entities.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

pub use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_key_audit;
mod m0003_key_lifecycle;
mod m0004_key_restrictions;
mod m0005_leaks;
mod m0006_imported_keys;
mod m0007_owner_lifecycle;
mod m0008_scim_users;
mod m0009_tenant_external_id;
mod m0010_hardening;
mod m0011_audit_changes;

/// All migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_key_audit::Migration),
            Box::new(m0003_key_lifecycle::Migration),
            Box::new(m0004_key_restrictions::Migration),
            Box::new(m0005_leaks::Migration),
            Box::new(m0006_imported_keys::Migration),
            Box::new(m0007_owner_lifecycle::Migration),
            Box::new(m0008_scim_users::Migration),
            Box::new(m0009_tenant_external_id::Migration),
            Box::new(m0010_hardening::Migration),
            Box::new(m0011_audit_changes::Migration),
        ]
    }
}
