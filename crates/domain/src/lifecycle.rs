//! The lifecycle of a key beyond generate, rotate and delete: rotation with
//! an overlap, expiry with warnings, disable and enable. Pure rules; the time
//! is always a parameter.

use chrono::{DateTime, Duration, Utc};

use crate::error::{Violation, ViolationCode};
use crate::model::{ApiKey, User};
use crate::{Role, TenantId, UserId};

/// Longest overlap of a rotation: the previous secret works at most 7 days
/// longer (as Stripe's `expire_current_key_in_minutes`).
pub const MAX_OVERLAP_SECS: i64 = 7 * 24 * 3600;
/// Furthest an expiry may lie ahead.
pub const MAX_EXPIRY_AHEAD_DAYS: i64 = 366;

crate::string_enum! {
    /// Whether a key works, as the key table shows it.
    pub enum KeyStatus {
        /// It verifies.
        Active = "active",
        /// An admin switched it off; enabling restores the same secret.
        Disabled = "disabled",
        /// Its expiry has passed.
        Expired = "expired",
        /// It was reported leaked and revoked; rotating it issues a fresh secret.
        Compromised = "compromised",
        /// Its owner was deactivated (or may no longer own keys); transferring
        /// it, or reactivating the owner, makes it work again.
        Suspended = "suspended",
    }
}

impl ApiKey {
    /// Its status at `now`, owned by `owner`. A compromised key is
    /// `Compromised` whatever else holds; a disabled key is `Disabled` even
    /// when suspended or past its expiry; a suspended key is `Suspended`
    /// even once past its expiry.
    pub fn status(&self, owner: &User, now: DateTime<Utc>) -> KeyStatus {
        if self.compromised_at.is_some() {
            KeyStatus::Compromised
        } else if self.disabled_at.is_some() {
            KeyStatus::Disabled
        } else if !crate::policy::owner_may_use_keys(owner) {
            KeyStatus::Suspended
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// Until when the previous secret still works, if it still does at `now`.
    pub fn previous_secret_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.previous_expires_at.filter(|until| *until > now)
    }
}

/// Checks a rotation's `overlapSeconds`: 0 (the old secret stops at once) up
/// to [`MAX_OVERLAP_SECS`].
pub fn overlap(seconds: i32) -> Result<Duration, Violation> {
    let seconds = i64::from(seconds);
    if !(0..=MAX_OVERLAP_SECS).contains(&seconds) {
        return Err(Violation::new(
            ViolationCode::Invalid,
            format!("The overlap must be between 0 and {MAX_OVERLAP_SECS} seconds (7 days)."),
        ));
    }
    Ok(Duration::seconds(seconds))
}

/// Checks an expiry: in the future, at most [`MAX_EXPIRY_AHEAD_DAYS`] ahead.
pub fn expiry(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, Violation> {
    if at <= now {
        return Err(Violation::new(ViolationCode::Invalid, "The expiry must be in the future."));
    }
    if at > now + Duration::days(MAX_EXPIRY_AHEAD_DAYS) {
        return Err(Violation::new(
            ViolationCode::Invalid,
            format!("The expiry must be at most {MAX_EXPIRY_AHEAD_DAYS} days ahead."),
        ));
    }
    Ok(at)
}

/// The notices an owner gets about an expiry, in the order they fall due.
/// Stored as their number: how far along a key's notices are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExpiryNotice {
    /// 7 days before.
    SevenDaysBefore = 1,
    /// 1 day before.
    OneDayBefore = 2,
    /// When it expired.
    Expired = 3,
}

impl ExpiryNotice {
    /// The stage number stored with a key.
    pub fn stage(self) -> i16 {
        self as i16
    }

    /// The latest notice due at `now` for a key expiring at `expires_at`
    /// (earlier ones that were missed are not sent: the latest says more).
    pub fn due(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<ExpiryNotice> {
        if expires_at <= now {
            Some(ExpiryNotice::Expired)
        } else if expires_at - Duration::days(1) <= now {
            Some(ExpiryNotice::OneDayBefore)
        } else if expires_at - Duration::days(7) <= now {
            Some(ExpiryNotice::SevenDaysBefore)
        } else {
            None
        }
    }

    /// How far before the expiry each notice falls due, latest stage first:
    /// a key whose stage is below a notice's and whose expiry is within this
    /// of `now` has a notice due.
    pub const LEADS: [(ExpiryNotice, Duration); 3] = [
        (ExpiryNotice::Expired, Duration::zero()),
        (ExpiryNotice::OneDayBefore, Duration::days(1)),
        (ExpiryNotice::SevenDaysBefore, Duration::days(7)),
    ];
}

/// The id of the actor of SCIM provisioning: never a row of `users`.
pub const SCIM_ACTOR_ID: UserId = UserId(uuid::Uuid::from_u128(1));

/// Who an identity provider's SCIM changes are attributed to: the provider,
/// named by the last four of the key it uses.
pub fn scim_actor(tenant_id: TenantId, key_last_four: &str) -> User {
    User {
        id: SCIM_ACTOR_ID,
        name: format!("SCIM provisioning (key ending in {key_last_four})"),
        ..system_actor(tenant_id)
    }
}

/// How often a key may rotate itself.
pub const SELF_ROTATION_EVERY: Duration = Duration::seconds(60);

/// Who a key's own changes (its self-rotation) are attributed to: the key,
/// named by the last four of the secret that made the change, acting for
/// its owner (an integration user's kind, so events say `KEY`).
pub fn key_actor(key: &ApiKey) -> User {
    User {
        id: key.owner_id,
        name: format!("API key ending in {}", key.last_four),
        role: Role::IntegrationUser,
        ..system_actor(key.tenant_id)
    }
}

/// Who Latchkey's own changes (expiry) are attributed to. Never a row of
/// `users`: its id is the nil UUID.
pub fn system_actor(tenant_id: TenantId) -> User {
    User {
        id: UserId(uuid::Uuid::nil()),
        tenant_id,
        email: String::new(),
        name: "Latchkey".into(),
        role: Role::InternalAdmin,
        active: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn overlaps_and_expiries_are_bounded() {
        assert_eq!(overlap(0).unwrap(), Duration::zero());
        assert_eq!(overlap(604_800).unwrap(), Duration::days(7));
        for bad in [-1, 604_801, i32::MAX, i32::MIN] {
            assert_eq!(overlap(bad).unwrap_err().code, ViolationCode::Invalid, "{bad}");
        }
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert!(expiry(now, now).is_err(), "now is not the future");
        assert!(expiry(now - Duration::seconds(1), now).is_err());
        assert!(expiry(now + Duration::seconds(1), now).is_ok());
        assert!(expiry(now + Duration::days(366), now).is_ok());
        assert!(expiry(now + Duration::days(366) + Duration::seconds(1), now).is_err());
    }

    #[test]
    fn the_latest_due_notice_wins() {
        let expires = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
        let at =
            |days: i64, secs: i64| ExpiryNotice::due(expires, expires - Duration::days(days) + Duration::seconds(secs));
        assert_eq!(at(8, 0), None);
        assert_eq!(at(7, -1), None);
        assert_eq!(at(7, 0), Some(ExpiryNotice::SevenDaysBefore));
        assert_eq!(at(1, -1), Some(ExpiryNotice::SevenDaysBefore));
        assert_eq!(at(1, 0), Some(ExpiryNotice::OneDayBefore));
        assert_eq!(at(0, -1), Some(ExpiryNotice::OneDayBefore));
        assert_eq!(at(0, 0), Some(ExpiryNotice::Expired));
        assert!(ExpiryNotice::SevenDaysBefore < ExpiryNotice::OneDayBefore);
        assert_eq!(ExpiryNotice::Expired.stage(), 3);
    }
}
