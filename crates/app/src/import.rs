//! `latchkey keys import`: keys from another system, one JSON object per
//! line, kept in their original format (see `latchkey_domain::import`). A bad
//! line is refused with its number and reason and does not stop the others
//! (unless `--atomic`); a key already there is skipped, so running an import
//! twice changes nothing, and a credential imported before and since rotated
//! away or deleted is never written again. Each imported key is audited
//! (`IMPORTED`, by "Latchkey") and its owner mailed, as for a generated key.
//! The tenant's key policy holds: a line that breaks it is refused with code
//! `POLICY`, its field and the rule (imported keys have full access, so a
//! policy requiring restrictions refuses them all). Nothing of a secret or
//! hash is ever printed.

use std::io::{BufRead, Read};

use chrono::{DateTime, Utc};
use latchkey_domain::description::shows_nothing;
use latchkey_domain::import::{ImportedSecret, from_hash, from_plaintext};
use latchkey_domain::{AuditChange, AuditEntry, Description, NoticeKind, TenantId, User, policy};
use latchkey_store::{ImportState, NewCredential, NewKey, StoreError};
use serde::Deserialize;
use serde_json::json;

use crate::App;
use crate::change::Change;
use crate::error::AppResult;

/// Longest line read (a longer one is refused, not parsed).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One line of an import file.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Record {
    owner_email: String,
    description: String,
    created_at: DateTime<Utc>,
    last_four: Option<String>,
    secret: Option<String>,
    hash: Option<String>,
    prefix: Option<String>,
    expires_at: Option<DateTime<Utc>>,
}

/// A line ready to write.
struct Ready {
    line: usize,
    key: NewKey,
    created_at: DateTime<Utc>,
}

/// Checks one record; the reason says what is wrong, never the secret.
async fn check(
    app: &App,
    tenant: TenantId,
    record: Record,
    now: DateTime<Utc>,
) -> Result<(NewKey, DateTime<Utc>), String> {
    let description = Description::parse(&record.description).map_err(|e| format!("description: {e}"))?;
    let owner = app
        .store
        .user_by_email(tenant, &record.owner_email)
        .await
        .map_err(|e| format!("the owner could not be read: {e}"))?
        .ok_or("ownerEmail: no user with this address in the tenant")?;
    if !policy::may_own_keys(&owner, tenant) {
        return Err("ownerEmail: this user cannot own keys (only internal admins and integration users can)".into());
    }
    if record.created_at > now {
        return Err("createdAt is in the future".into());
    }
    let last_four = match &record.last_four {
        Some(l) if l.chars().count() <= 4 && !shows_nothing(l) && !l.chars().any(char::is_control) => l.clone(),
        Some(_) => return Err("lastFour must be 1 to 4 visible characters".into()),
        None => record
            .secret
            .as_deref()
            .map_or("—".into(), |s| s.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect()),
    };
    let key = match (record.secret.as_deref(), record.hash.as_deref()) {
        (Some(_), Some(_)) => return Err("give either secret or hash, not both".into()),
        (None, None) => return Err("give the key's secret or its hash".into()),
        // A Latchkey key keeps its own lookup id.
        (Some(secret), None) if secret.starts_with(latchkey_domain::secret::KEY_PREFIX) => {
            let parsed = latchkey_domain::ParsedKey::parse(secret).map_err(|e| format!("secret: {e}"))?;
            let credential = NewCredential {
                lookup_id: parsed.lookup_id(),
                hash: latchkey_domain::hashing::sha256_stored(secret),
                last_four: last_four.clone(),
            };
            NewKey::new(tenant, owner.id, description, credential)
        }
        (Some(secret), None) => imported(
            tenant,
            owner.id,
            description,
            from_plaintext(secret, record.prefix.as_deref())?,
            last_four,
            record.created_at,
        ),
        (None, Some(hash)) => imported(
            tenant,
            owner.id,
            description,
            from_hash(hash, record.prefix.as_deref())?,
            last_four,
            record.created_at,
        ),
    };
    Ok((key.expiring_at(record.expires_at), record.created_at))
}

fn imported(
    tenant: TenantId,
    owner: latchkey_domain::UserId,
    description: Description,
    secret: ImportedSecret,
    last_four: String,
    created_at: DateTime<Utc>,
) -> NewKey {
    NewKey::imported(tenant, owner, description, secret.lookup, secret.hash, last_four, created_at)
}

/// Imports the records of `input` into `tenant`; returns the JSON report.
pub(crate) async fn run(
    app: &App,
    tenant: TenantId,
    input: impl BufRead,
    dry_run: bool,
    atomic: bool,
    now: DateTime<Utc>,
) -> AppResult<Result<serde_json::Value, std::io::Error>> {
    let mut refused = Vec::new();
    let mut ready = Vec::new();
    let mut lookups = std::collections::HashSet::new();
    let policy = app.store.key_policy(tenant).await?;
    // Keys each owner has, counting those this import makes.
    let mut owned = std::collections::HashMap::new();
    let mut reader = input;
    let mut line = 0usize;
    loop {
        let mut buffer = Vec::new();
        let read = match reader.by_ref().take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut buffer) {
            Ok(read) => read,
            Err(e) => return Ok(Err(e)),
        };
        if read == 0 {
            break;
        }
        line += 1;
        if buffer.len() > MAX_LINE_BYTES && !buffer.ends_with(b"\n") {
            refused.push(json!({ "line": line, "reason": format!("the line is longer than {MAX_LINE_BYTES} bytes") }));
            // Skip the rest of the long line without holding it.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = match reader.by_ref().take(MAX_LINE_BYTES as u64).read_until(b'\n', &mut rest) {
                    Ok(n) => n,
                    Err(e) => return Ok(Err(e)),
                };
                if n == 0 || rest.ends_with(b"\n") {
                    break;
                }
            }
            continue;
        }
        let text = String::from_utf8_lossy(&buffer);
        if text.trim().is_empty() {
            continue;
        }
        let outcome = match serde_json::from_str::<Record>(text.trim()) {
            Err(e) => {
                Err(format!("not a valid record: {}", e.to_string().split(" at line").next().unwrap_or("bad JSON")))
            }
            Ok(record) => check(app, tenant, record, now).await,
        };
        match outcome {
            Ok((key, created_at)) => {
                if !lookups.insert(key.import_identity()) {
                    refused.push(json!({ "line": line, "reason": "the same key appears earlier in the file" }));
                    continue;
                }
                let count = match owned.get(&key.owner_id) {
                    Some(count) => *count,
                    None => app.store.count_keys_owned_by(tenant, key.owner_id).await?,
                };
                // Imported keys have full access: `requireRestrictions` refuses them all.
                let breaks = policy
                    .check_expiry(key.expires_at, now)
                    .or_else(|| policy.check_permissions(key.restrictions.permissions.is_none()))
                    .or_else(|| policy.check_owner_count(count, "ownerEmail"));
                if let Some(refusal) = breaks {
                    let field = refusal.field;
                    refused.push(json!({ "line": line, "code": "POLICY", "field": field, "reason": refusal.message }));
                    continue;
                }
                owned.insert(key.owner_id, count + 1);
                ready.push(Ready { line, key, created_at });
            }
            Err(reason) => refused.push(json!({ "line": line, "reason": reason })),
        }
    }
    let (mut imported, mut skipped, mut retired) = (Vec::new(), Vec::new(), Vec::new());
    let write = !dry_run && (!atomic || refused.is_empty());
    if write {
        let actor = latchkey_domain::lifecycle::system_actor(tenant);
        for Ready { line, key, created_at } in ready {
            match write_imported(app, key, created_at, &actor, now).await? {
                Ok(id) => imported.push((line, id)),
                Err(ImportState::Present | ImportState::New) => skipped.push(line),
                Err(ImportState::Retired) => retired.push(line),
            }
        }
    }
    let imported: Vec<_> = imported.into_iter().map(|(line, id)| json!({ "line": line, "id": id })).collect();
    Ok(Ok(json!({
        "dryRun": dry_run,
        "written": write,
        "imported": imported.len(),
        "importedKeys": imported,
        "skippedAsPresent": skipped,
        "skippedAsRetired": retired,
        "refused": refused,
    })))
}

/// Inserts one imported key, as a key from before key management, with its
/// `IMPORTED` audit entry and owner notice (by `actor`), in one unit of
/// work; `New` when it was written. A credential imported before is never
/// written again: not while its key is there (an import can run twice), nor
/// after it was rotated away or deleted.
async fn write_imported(
    app: &App,
    new: NewKey,
    created_at: DateTime<Utc>,
    actor: &User,
    now: DateTime<Utc>,
) -> AppResult<Result<latchkey_domain::ApiKeyId, ImportState>> {
    let mut change = Change::begin(app).await?;
    let state = change.import_state(&new).await?;
    if state != ImportState::New {
        return Ok(Err(state));
    }
    let identity = new.import_identity();
    let key = match change.insert_key(new, created_at, None).await {
        Ok(key) => key,
        Err(StoreError::Conflict(_)) => return Ok(Err(ImportState::Present)),
        Err(e) => return Err(e.into()),
    };
    change.remember_import(identity, &key, now).await?;
    change.mail_owner(NoticeKind::Imported, &key, actor, now).await?;
    let imported = latchkey_domain::webhook_events::fields([("imported", true.into())]);
    change
        .publish_key_event(latchkey_domain::webhooks::WebhookEventType::KeyCreated, &key, actor, now, imported)
        .await?;
    change.audit(&AuditEntry::new(AuditChange::Imported, &key, actor, now)).await?;
    change.commit().await?;
    Ok(Ok(key.id))
}
