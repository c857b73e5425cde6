//! Latchkey's database schema, as ordered sea-orm migrations. Every table,
//! index and constraint lives here; nothing is created from entities. A
//! migration is one file, `src/mNNNN_<name>.rs`: `build.rs` registers it.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

pub use sea_orm_migration::prelude::*;

// `mod mNNNN_…;` for every migration file, and `all()`, written by build.rs.
include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// All migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        all()
    }
}
