//! A key that rotates itself (`POST /v1/keys/rotate`), the way GitLab's
//! tokens do: only when an admin allowed it (`selfRotation`), only with its
//! current secret, at most once a minute, under the tenant's key policy. The
//! new key keeps its owner, restrictions and limits; the rotation is
//! audited with the key as actor, mailed to the owner and published.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use latchkey_domain::lifecycle::{self, MAX_OVERLAP_SECS, SELF_ROTATION_EVERY};
use latchkey_domain::{ApiKeyId, ApiKeySecret};

use crate::error::{AppError, AppResult};
use crate::keys::{KeyAdmin, SecretTarget};
use crate::{App, RequestContext, VerifyOutcome};

/// What the key asks of its rotation.
#[derive(Clone, Debug, Default)]
pub struct SelfRotate {
    /// How long the presented secret keeps working, in seconds (0 to 7 days,
    /// bounded by the policy's `maxOverlapSeconds`); none: it stops at once.
    pub overlap_seconds: Option<i64>,
    /// Whether the presented secret stops as soon as the new one verifies.
    pub end_overlap_on_first_use: bool,
}

/// A self-rotation done: the new secret, shown this once.
#[derive(Debug)]
pub struct SelfRotated {
    /// The key.
    pub key_id: ApiKeyId,
    /// Its new secret.
    pub secret: ApiKeySecret,
    /// When the key stops working; none for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Until when the presented secret keeps working; none when it stopped.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

impl App {
    /// Rotates the key whose secret is `presented` (from `client`), as the
    /// key itself. `UNAUTHENTICATED` for a key that does not verify,
    /// `FORBIDDEN` for a key not allowed to or a secret that is not its
    /// current one, `BAD_USER_INPUT` for an overlap out of range or beyond
    /// the policy, `RATE_LIMIT_EXCEEDED` within a minute of the last one.
    /// Of concurrent self-rotations of one key exactly one wins.
    pub async fn self_rotate(
        &self,
        presented: &str,
        client: Option<IpAddr>,
        user_agent: Option<&str>,
        command: SelfRotate,
    ) -> AppResult<SelfRotated> {
        let overlap_seconds = command.overlap_seconds.unwrap_or(0);
        let overlap =
            i32::try_from(overlap_seconds).ok().and_then(|s| lifecycle::overlap(s).ok()).ok_or_else(|| {
                AppError::BadUserInput(format!("`overlapSeconds` must be an integer from 0 to {MAX_OVERLAP_SECS}."))
            })?;
        let request =
            RequestContext { ip: client, user_agent: user_agent.map(str::to_owned), ..RequestContext::default() };
        let verified = match self.verifier.verify(presented, client, &request).await? {
            VerifyOutcome::Valid(verified, _) => verified,
            refused => return Err(self.key_refusal(refused)),
        };
        if verified.previous {
            return Err(AppError::Forbidden(
                "Only a key's current secret may rotate it; this is its previous secret, kept by an overlap.".into(),
            ));
        }
        let not_allowed =
            || AppError::Forbidden("This key may not rotate itself; an admin can allow it (selfRotation).".into());
        let Some(key) = self.store.key(verified.tenant_id, verified.key_id).await? else {
            return Err(AppError::Unauthenticated("The API key is not valid.".into()));
        };
        if !key.self_rotation {
            return Err(not_allowed());
        }
        let now = self.clock.now();
        let policy = self.store.key_policy(key.tenant_id).await?;
        let expires_at =
            if policy.expiry_required() { policy.rotation_expiry(key.expires_at, now) } else { key.expires_at };
        if let Some(refused) = policy.check_overlap(overlap_seconds).or_else(|| policy.check_expiry(expires_at, now)) {
            return Err(AppError::BadUserInput(refused.message));
        }
        let previous_until =
            (!overlap.is_zero()).then(|| key.expires_at.map_or(now + overlap, |e| e.min(now + overlap)));
        let actor = lifecycle::key_actor(&key);
        let target = SecretTarget::Rotate {
            id: key.id,
            expires_at,
            previous_until,
            end_overlap_on_first_use: command.end_overlap_on_first_use,
            by_itself: Some((verified.version, now - SELF_ROTATION_EVERY)),
        };
        match (KeyAdmin { app: self, actor: &actor }).write_new_secret(target).await? {
            Some((rotated, secret)) => {
                tracing::info!(tenant = %rotated.tenant_id, key = %rotated.id, "key rotated itself");
                Ok(SelfRotated {
                    key_id: rotated.id,
                    secret,
                    expires_at: rotated.expires_at,
                    previous_secret_expires_at: rotated.previous_expires_at,
                })
            }
            None => {
                // The claim failed: say why, as the key is now.
                let state = self.store.self_rotation_state(key.tenant_id, key.id).await?;
                Err(match state {
                    None => AppError::Unauthenticated("The API key is not valid.".into()),
                    Some(state) if state.version != verified.version => AppError::Forbidden(
                        "This secret was rotated away meanwhile; only the key's current secret may rotate it.".into(),
                    ),
                    Some(state) if !state.allowed => not_allowed(),
                    Some(state) => AppError::RateLimitExceeded {
                        message: "A key may rotate itself at most once a minute; retry later.".into(),
                        retry_after_secs: state
                            .last_at
                            .map_or(1, |at| (at + SELF_ROTATION_EVERY - now).num_seconds().max(1)),
                    },
                })
            }
        }
    }
}

impl App {
    /// Ends the overlap of `key` because its current secret (credential
    /// `version`) verified, if it still keeps a previous secret that stops
    /// on that first use: at once here, on every replica through the
    /// revocation notice. Audited as `PREVIOUS_SECRET_EXPIRED` (reason
    /// `NEW_SECRET_USED`) by Latchkey. Whether it ended one (each once,
    /// whichever replica saw the use).
    pub async fn end_overlap_on_first_use(&self, (key, version): crate::verify::FirstUse) -> AppResult<bool> {
        let now = latchkey_store::storable(self.clock.now());
        let mut change = crate::change::Change::begin(self).await?;
        let Some(ended) = change.end_previous_secret_on_first_use(key, version, now).await? else {
            return Ok(false);
        };
        let actor = lifecycle::system_actor(ended.tenant_id);
        let expired = latchkey_domain::AuditChange::PreviousSecretExpired { at: now, new_secret_used: true };
        change.audit(&latchkey_domain::AuditEntry::new(expired, &ended, &actor, now)).await?;
        change.revoke(&ended).await?;
        change.commit().await?;
        tracing::info!(tenant = %ended.tenant_id, key = %ended.id, "previous secret ended: the new one was used");
        Ok(true)
    }
}
