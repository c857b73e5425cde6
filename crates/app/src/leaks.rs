//! Leak reports: someone (GitHub's secret scanning, or anyone through
//! `POST /v1/keys/report-leak`) found a key exposed. A real key is revoked at
//! once (unless its tenant says `notify`), its owner and the tenant's internal
//! admins are mailed, and the audit trail records it; a report of anything
//! else does nothing. The caller learns nothing about the key either way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use latchkey_domain::hashing::verify_secret;
use latchkey_domain::{ApiKeyId, AuditChange, AuditEntry, LeakReport, LeakResponse, Notice, NoticeKind, ParsedKey};
use latchkey_store::storable;
use sha2::{Digest, Sha256};

use crate::App;
use crate::change::Change;
use crate::error::AppResult;

/// Reports one client may make per minute.
pub const REPORTS_PER_MINUTE: u32 = 30;
/// Most clients remembered by the limit.
const MAX_CLIENTS: usize = 10_000;

/// How many leak reports each client made in its current minute. A client
/// is an address (IPv6: its /64, what one host is given); when the map is
/// full the oldest windows make room, so a flood of new addresses can never
/// shut others out.
#[derive(Debug, Default)]
pub struct ReportLimiter(Mutex<HashMap<IpAddr, (Instant, u32)>>);

impl ReportLimiter {
    /// Whether `client` may report now (and counts it). Clients whose
    /// address is not known (a proxy that did not say) share one limit.
    pub fn allow(&self, client: Option<IpAddr>, now: Instant) -> bool {
        let client = client.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), crate::verify::client_presenter);
        let Ok(mut clients) = self.0.lock() else { return false };
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, (since, _)| now.duration_since(*since) < Duration::from_secs(60));
            if clients.len() >= MAX_CLIENTS
                && let Some(oldest) = clients.iter().min_by_key(|(_, (since, _))| *since).map(|(ip, _)| *ip)
            {
                clients.remove(&oldest);
            }
        }
        let (since, count) = clients.entry(client).or_insert((now, 0));
        if now.duration_since(*since) >= Duration::from_secs(60) {
            (*since, *count) = (now, 0);
        }
        *count += 1;
        *count <= REPORTS_PER_MINUTE
    }
}

/// Where a leaked key was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundAt {
    /// Who reports it ("GitHub secret scanning", "Leak report").
    pub reporter: String,
    /// A URL, if given.
    pub url: Option<String>,
    /// The kind of place (`content`, `commit`, ...), if given.
    pub source: Option<String>,
}

/// The SHA-256 of a token, in hex (as GitHub's `token_hash`).
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl App {
    /// Acts on a report that `token` leaked; `Ok(true)` when it is one of
    /// Latchkey's working credentials (current secret, or a previous one in
    /// its overlap). A secret that no longer works (a previous secret past its
    /// overlap, or its key's expiry) is a false positive: acting on it would
    /// revoke the key's *current* secret for a leak that opens nothing.
    /// Repeated reports of one token change and mail nothing more.
    pub async fn report_leak(&self, token: &str, found: &FoundAt) -> AppResult<bool> {
        let Ok(parsed) = ParsedKey::parse(token) else { return Ok(false) };
        let credentials = self.store.credentials_by_lookup_ids(std::slice::from_ref(&parsed.lookup_id())).await?;
        // Off the async workers: a legacy (argon2id) hash takes milliseconds.
        let presented = token.to_owned();
        let matched = tokio::task::spawn_blocking(move || {
            let parsed = ParsedKey::parse(&presented).ok()?;
            credentials.into_iter().find(|c| verify_secret(&parsed, &c.hash))
        })
        .await?;
        let Some(credential) = matched else {
            return Ok(false);
        };
        if credential.works_until.is_some_and(|until| until <= self.clock.now()) {
            tracing::info!(key = %credential.key_id, reporter = %found.reporter, "a leak report named a secret that no longer works; ignored");
            return Ok(false);
        }
        self.record_leak(credential.key_id, &token_hash(token), found).await?;
        Ok(true)
    }

    /// Records a leak of `key` once per key and token (`token_digest`): a
    /// repeated report changes and mails nothing. Unless its tenant says
    /// `notify`, the key is revoked at once (`COMPROMISED`, on every
    /// replica). The owner and every active internal admin of the tenant are
    /// mailed; the audit trail records it.
    async fn record_leak(&self, key: ApiKeyId, token_digest: &str, found: &FoundAt) -> AppResult<()> {
        let now = storable(self.clock.now());
        let mut change = Change::begin(self).await?;
        let Some(mut key) = change.locked_key_of_any_tenant(key).await? else { return Ok(()) };
        if !change.insert_leak_report(key.id, token_digest, &found.reporter, found.url.as_deref(), now).await? {
            return Ok(());
        }
        let revoked =
            change.leak_response(key.tenant_id).await? == LeakResponse::Revoke && key.compromised_at.is_none();
        if revoked {
            change.set_key_compromised(key.id, now).await?;
            key.compromised_at = Some(now);
            change.revoke(&key).await?;
        }
        let leak = LeakReport {
            reporter: found.reporter.clone(),
            url: found.url.clone(),
            source: found.source.clone(),
            revoked,
        };
        let mut actor = latchkey_domain::lifecycle::system_actor(key.tenant_id);
        actor.name = found.reporter.clone();
        let owner = change.owner_of(&key).await?;
        let admins = change.active_internal_admins(key.tenant_id).await?;
        let owner_id = owner.id;
        let mut recipients = vec![owner];
        recipients.extend(admins.into_iter().filter(|admin| admin.id != owner_id));
        for recipient in &recipients {
            let mut notice = Notice::new(NoticeKind::Leaked, &key, recipient, &actor, now);
            notice.leak = Some(leak.clone());
            change.mail(&notice).await?;
        }
        let reported = latchkey_domain::webhook_events::fields([(
            "leak",
            serde_json::json!({"reporter": leak.reporter, "url": leak.url, "source": leak.source, "revoked": revoked}),
        )]);
        change
            .publish_key_event(latchkey_domain::webhooks::WebhookEventType::KeyCompromised, &key, &actor, now, reported)
            .await?;
        let LeakReport { url, source, .. } = leak;
        change.audit(&AuditEntry::new(AuditChange::LeakReported { url, source, revoked }, &key, &actor, now)).await?;
        change.commit().await?;
        tracing::warn!(key = %key.id, revoked, notified = recipients.len(), reporter = %found.reporter, "key reported leaked");
        Ok(())
    }

    /// Takes a report from anyone: counted against `client`'s limit (false
    /// when over it), then handled in the background, so that neither the
    /// answer nor its timing says whether the key was real.
    pub fn accept_leak_report(&self, token: String, url: Option<String>, client: Option<IpAddr>) -> bool {
        if !self.leak_reports.allow(client, Instant::now()) {
            return false;
        }
        let app = self.clone();
        tokio::spawn(async move {
            let found = FoundAt { reporter: "Leak report".into(), url, source: None };
            if let Err(e) = app.report_leak(&token, &found).await {
                tracing::warn!(error = %e, "a leak report could not be handled");
            }
        });
        true
    }
}

/// What a tenant does about leaks, read and set by its internal admins.
impl crate::KeyAdmin<'_> {
    /// The tenant's leak response.
    pub async fn leak_response(&self) -> AppResult<LeakResponse> {
        Ok(self.app.store.leak_response(self.actor.tenant_id).await?)
    }

    /// Sets the tenant's leak response.
    pub async fn set_leak_response(&self, response: LeakResponse) -> AppResult<LeakResponse> {
        self.app.store.set_leak_response(self.actor.tenant_id, response).await?;
        Ok(response)
    }

    /// Whether SCIM may make internal admins in the tenant.
    pub async fn scim_may_grant_internal_admin(&self) -> AppResult<bool> {
        Ok(self.app.store.scim_may_grant_internal_admin(self.actor.tenant_id).await?)
    }

    /// Lets SCIM make internal admins (or not); audited when it changes.
    pub async fn set_scim_may_grant_internal_admin(&self, allowed: bool) -> AppResult<()> {
        let before = self.scim_may_grant_internal_admin().await?;
        if before == allowed {
            return Ok(());
        }
        let entry = latchkey_domain::AuditEntry::setting_changed(
            self.actor,
            "scimMayGrantInternalAdmin",
            before.to_string(),
            allowed.to_string(),
            self.app.clock.now(),
        );
        let mut change = Change::begin(self.app).await?;
        change.set_scim_may_grant_internal_admin(self.actor.tenant_id, allowed).await?;
        change.audit(&entry).await?;
        change.commit().await?;
        tracing::info!(tenant = %self.actor.tenant_id, actor = %self.actor.id, allowed, "scimMayGrantInternalAdmin changed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_reports_per_minute() {
        let limiter = ReportLimiter::default();
        let (a, b) = (Some("192.0.2.1".parse().unwrap()), Some("192.0.2.2".parse().unwrap()));
        let now = Instant::now();
        assert!((0..REPORTS_PER_MINUTE).all(|_| limiter.allow(a, now)));
        assert!(!limiter.allow(a, now));
        assert!(limiter.allow(b, now));
        assert!(limiter.allow(a, now + Duration::from_secs(61)));
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn a_flood_of_new_addresses_never_shuts_anyone_out_and_ipv6_counts_per_64() {
        let limiter = ReportLimiter::default();
        let now = Instant::now();
        for n in 0..(MAX_CLIENTS as u32 + 5_000) {
            assert!(limiter.allow(Some(IpAddr::from((0x7f00_0000 | n).to_be_bytes())), now), "address {n}");
        }
        assert!(limiter.allow(Some("192.0.2.77".parse().unwrap()), now), "a newcomer after the flood");
        let host = |last: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]));
        assert!((0..REPORTS_PER_MINUTE as u16).all(|n| limiter.allow(host(n), now)));
        assert!(!limiter.allow(host(999), now), "another address of the same /64");
    }
}
