//! Reading usage: a key's series, the tenant's, recent totals for the key
//! table, and the credential report. Internal admins read every key of
//! their tenant; an integration reads its own key's usage only.

use chrono::{DateTime, Utc};
use latchkey_domain::usage::{Granularity, UsageRange, UsageSeries};
use latchkey_domain::{ApiKeyId, TenantId};
use serde::Serialize;

use crate::error::{AppError, AppResult};
use crate::keys::{KeyAdmin, KeyView};
use crate::{App, Authentication, Principal};

/// A series asked for: `from` inclusive, `to` exclusive, by `granularity`.
#[derive(Clone, Copy, Debug)]
pub struct UsageQuery {
    /// The first instant.
    pub from: DateTime<Utc>,
    /// The instant after the last.
    pub to: DateTime<Utc>,
    /// Hours or days.
    pub granularity: Granularity,
}

impl App {
    fn usage_range(&self, query: UsageQuery) -> AppResult<UsageRange> {
        UsageRange::new(query.from, query.to, query.granularity, self.clock.now()).map_err(AppError::BadUserInput)
    }

    /// The tenant whose key `key` the caller may read usage of: an internal
    /// admin's tenant (for its keys), or an integration's own key.
    fn usage_reader(&self, auth: &Authentication, key: ApiKeyId) -> AppResult<TenantId> {
        if let Principal::Integration { key: own, tenant } = auth.principal()? {
            if own.key.id == key {
                return Ok(tenant.id);
            }
            return Err(AppError::Forbidden("An API key may read only its own usage.".into()));
        }
        Ok(self.key_admin(auth)?.actor.tenant_id)
    }

    /// The usage series of key `key`, for its tenant's internal admins and
    /// for the key itself.
    pub async fn key_usage(&self, auth: &Authentication, key: ApiKeyId, query: UsageQuery) -> AppResult<UsageSeries> {
        let tenant = self.usage_reader(auth, key)?;
        let range = self.usage_range(query)?;
        let rows = self.store.key_usage(tenant, key, &range).await?;
        Ok(UsageSeries::of(&range, &rows))
    }

    /// Successful verifications of key `key` in the last 30 days, for whom
    /// [`App::key_usage`] allows.
    pub async fn key_usage_30d(&self, auth: &Authentication, key: ApiKeyId) -> AppResult<u64> {
        let tenant = self.usage_reader(auth, key)?;
        let totals = self.store.valid_usage_of_keys(tenant, &[key], &UsageRange::recent(self.clock.now())).await?;
        Ok(totals.get(&key).copied().unwrap_or(0))
    }

    /// Fills each view's `usage_30d` with one query.
    pub(crate) async fn with_recent_usage(&self, mut views: Vec<KeyView>) -> AppResult<Vec<KeyView>> {
        let Some(tenant) = views.first().map(|v| v.key.tenant_id) else { return Ok(views) };
        let ids: Vec<ApiKeyId> = views.iter().map(|v| v.key.id).collect();
        let totals = self.store.valid_usage_of_keys(tenant, &ids, &UsageRange::recent(self.clock.now())).await?;
        for view in &mut views {
            view.usage_30d = Some(totals.get(&view.key.id).copied().unwrap_or(0));
        }
        Ok(views)
    }

    /// The credential report of `tenant`: every key, oldest first.
    pub(crate) async fn credential_report(&self, tenant: TenantId) -> AppResult<Vec<ReportRow>> {
        let now = self.clock.now();
        let recent = UsageRange::recent(now);
        let keys = self.store.all_keys(tenant).await?;
        let views = self.with_recent_usage(self.key_views(keys).await?).await?;
        let ids: Vec<ApiKeyId> = views.iter().map(|v| v.key.id).collect();
        let refused = self.store.refused_usage_of_keys(tenant, &ids, &recent).await?;
        Ok(views
            .into_iter()
            .map(|view| {
                let key = &view.key;
                let last = key.last_use.as_ref();
                ReportRow {
                    id: key.id.to_string(),
                    last_four: key.last_four.clone(),
                    description: key.description.clone(),
                    owner_name: view.owner.name.clone(),
                    owner_email: view.owner.email.clone(),
                    status: view.status.as_str().to_ascii_uppercase(),
                    restrictions: key.restrictions.describe(),
                    created_at: key.created_at,
                    last_edited_at: key.last_edited_at,
                    last_used_at: last.map(|l| l.at),
                    last_used_cloud: last.and_then(|l| l.cloud).map(|c| c.as_str().to_ascii_uppercase()),
                    last_used_address: last.and_then(|l| l.client_address).map(|a| a.to_string()),
                    expires_at: key.expires_at,
                    verifications_30d: view.usage_30d.unwrap_or(0),
                    refusals_30d: refused.get(&key.id).copied().unwrap_or(0),
                }
            })
            .collect())
    }
}

impl KeyAdmin<'_> {
    /// The usage series of all keys of the tenant.
    pub async fn tenant_usage(&self, query: UsageQuery) -> AppResult<UsageSeries> {
        let range = self.app.usage_range(query)?;
        let rows = self.app.store.tenant_usage(self.actor.tenant_id, &range).await?;
        Ok(UsageSeries::of(&range, &rows))
    }

    /// The tenant's credential report, as CSV.
    pub async fn credential_report_csv(&self) -> AppResult<String> {
        Ok(report_csv(&self.app.credential_report(self.actor.tenant_id).await?))
    }
}

/// One key in the credential report (AWS's, for audits).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRow {
    /// The key's id.
    pub id: String,
    /// The last four characters of its secret.
    pub last_four: String,
    /// What it is for.
    pub description: String,
    /// Its owner's name.
    pub owner_name: String,
    /// Its owner's email address.
    pub owner_email: String,
    /// Its status now (`ACTIVE`, `DISABLED`, …).
    pub status: String,
    /// Its restrictions, in words.
    pub restrictions: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last generated, rotated or edited.
    pub last_edited_at: Option<DateTime<Utc>>,
    /// When it last verified.
    pub last_used_at: Option<DateTime<Utc>>,
    /// For which cloud.
    pub last_used_cloud: Option<String>,
    /// From which address.
    pub last_used_address: Option<String>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Successful verifications in the last 30 days.
    pub verifications_30d: u64,
    /// Refused verifications that named it in the last 30 days.
    pub refusals_30d: u64,
}

/// The report's columns, in order.
const REPORT_COLUMNS: [&str; 15] = [
    "id",
    "last_four",
    "description",
    "owner_name",
    "owner_email",
    "status",
    "restrictions",
    "created_at",
    "last_edited_at",
    "last_used_at",
    "last_used_cloud",
    "last_used_address",
    "expires_at",
    "verifications_30d",
    "refusals_30d",
];

/// A CSV field (RFC 4180): quoted when it holds a comma, quote or line
/// break; a leading `=`, `+`, `-` or `@` is prefixed with `'` so that a
/// spreadsheet does not run a description as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) { format!("'{value}") } else { value.to_owned() };
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}

fn instant(at: Option<DateTime<Utc>>) -> String {
    at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
}

/// The report as CSV with a header line.
pub fn report_csv(rows: &[ReportRow]) -> String {
    let mut csv = REPORT_COLUMNS.join(",") + "\r\n";
    for row in rows {
        let fields = [
            row.id.clone(),
            row.last_four.clone(),
            row.description.clone(),
            row.owner_name.clone(),
            row.owner_email.clone(),
            row.status.clone(),
            row.restrictions.clone(),
            instant(Some(row.created_at)),
            instant(row.last_edited_at),
            instant(row.last_used_at),
            row.last_used_cloud.clone().unwrap_or_default(),
            row.last_used_address.clone().unwrap_or_default(),
            instant(row.expires_at),
            row.verifications_30d.to_string(),
            row.refusals_30d.to_string(),
        ];
        csv += &fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
        csv += "\r\n";
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
    }
}
