//! Audit entries as one enum of changes: each entry keeps what its kind of
//! change records in one `details` column (JSON, the domain's
//! `AuditChange`), so a new kind of change adds no column. The per-kind
//! columns of earlier migrations are copied into `details` and dropped.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::prelude::{ChronoDateTimeUtc, Uuid};
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum KeyAudit {
    Table,
    Id,
    Details,
    OldDescription,
    NewDescription,
    PreviousSecretExpiresAt,
    OldExpiresAt,
    NewExpiresAt,
    RestrictionsBefore,
    RestrictionsAfter,
    LeakSource,
    LeakUrl,
    LeakRevoked,
    OwnerBefore,
    OwnerAfter,
}

const LEGACY_TEXT: [KeyAudit; 8] = [
    KeyAudit::OldDescription,
    KeyAudit::NewDescription,
    KeyAudit::RestrictionsBefore,
    KeyAudit::RestrictionsAfter,
    KeyAudit::LeakSource,
    KeyAudit::LeakUrl,
    KeyAudit::OwnerBefore,
    KeyAudit::OwnerAfter,
];
const LEGACY_TIMES: [KeyAudit; 3] = [KeyAudit::PreviousSecretExpiresAt, KeyAudit::OldExpiresAt, KeyAudit::NewExpiresAt];

/// A JSON string (or null).
fn json_text(value: Option<String>) -> String {
    match value {
        None => "null".to_owned(),
        Some(text) => {
            let mut out = String::with_capacity(text.len() + 2);
            out.push('"');
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

fn json_time(value: Option<ChronoDateTimeUtc>) -> String {
    json_text(value.map(|t| t.to_rfc3339()))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(KeyAudit::Table).add_column(text_null(KeyAudit::Details).to_owned()).to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let rows = db
            .query_all_raw(Statement::from_string(
                manager.get_database_backend(),
                "SELECT id, action, old_description, new_description, previous_secret_expires_at, old_expires_at, \
                 new_expires_at, restrictions_before, restrictions_after, leak_source, leak_url, leak_revoked, \
                 owner_before, owner_after FROM key_audit",
            ))
            .await?;
        for row in rows {
            let id: Uuid = row.try_get("", "id")?;
            let action: String = row.try_get("", "action")?;
            let text = |column: &str| row.try_get::<Option<String>>("", column);
            let time = |column: &str| row.try_get::<Option<ChronoDateTimeUtc>>("", column);
            let pair = |a: Option<String>, b: Option<String>| (json_text(a), json_text(b));
            let fields = match action.as_str() {
                "rotated" => format!(r#","previous_secret_until":{}"#, json_time(time("previous_secret_expires_at")?)),
                "previous_secret_expired" => {
                    format!(r#","at":{}"#, json_time(time("previous_secret_expires_at")?))
                }
                "description_changed" | "settings_changed" => {
                    let (old, new) = pair(text("old_description")?, text("new_description")?);
                    format!(r#","old":{old},"new":{new}"#)
                }
                "expiry_changed" => {
                    format!(
                        r#","old":{},"new":{}"#,
                        json_time(time("old_expires_at")?),
                        json_time(time("new_expires_at")?)
                    )
                }
                "restrictions_changed" => {
                    let (before, after) = pair(text("restrictions_before")?, text("restrictions_after")?);
                    format!(r#","before":{before},"after":{after}"#)
                }
                "owner_changed" => {
                    let (before, after) = pair(text("owner_before")?, text("owner_after")?);
                    format!(r#","before":{before},"after":{after}"#)
                }
                "leak_reported" => {
                    let revoked = row.try_get::<Option<bool>>("", "leak_revoked")?.unwrap_or(false);
                    let (url, source) = pair(text("leak_url")?, text("leak_source")?);
                    format!(r#","url":{url},"source":{source},"revoked":{revoked}"#)
                }
                _ => String::new(),
            };
            let kind = if action == "settings_changed" { "setting_changed" } else { action.as_str() };
            let details = format!(r#"{{"kind":{}{fields}}}"#, json_text(Some(kind.to_owned())));
            manager
                .exec_stmt(
                    Query::update()
                        .table(KeyAudit::Table)
                        .value(KeyAudit::Details, details)
                        .and_where(Expr::col(KeyAudit::Id).eq(id))
                        .to_owned(),
                )
                .await?;
        }
        // SQLite drops one column per statement.
        for column in LEGACY_TEXT.into_iter().chain(LEGACY_TIMES).chain([KeyAudit::LeakRevoked]) {
            manager.alter_table(Table::alter().table(KeyAudit::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }

    /// Brings the columns back empty: entries keep their kind, not their details.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in LEGACY_TEXT {
            let add = Table::alter().table(KeyAudit::Table).add_column(text_null(column).to_owned()).to_owned();
            manager.alter_table(add).await?;
        }
        for column in LEGACY_TIMES {
            let add = Table::alter()
                .table(KeyAudit::Table)
                .add_column(timestamp_with_time_zone_null(column).to_owned())
                .to_owned();
            manager.alter_table(add).await?;
        }
        let add =
            Table::alter().table(KeyAudit::Table).add_column(boolean_null(KeyAudit::LeakRevoked).to_owned()).to_owned();
        manager.alter_table(add).await?;
        manager.alter_table(Table::alter().table(KeyAudit::Table).drop_column(KeyAudit::Details).to_owned()).await?;
        Ok(())
    }
}
