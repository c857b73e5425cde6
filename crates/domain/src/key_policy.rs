//! A tenant's key policy: the rules every new or changed key must keep
//! (lifetime, expiry, restrictions, overlap, keys per owner) and when an
//! unused key is switched off. Keys that broke a rule when it was set keep
//! working; [`KeyPolicy::violations`] names what they break.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Violation, ViolationCode};
use crate::model::ApiKey;
pub use crate::model::UnusedWarning;

/// The range of `maxLifetimeDays`.
pub const LIFETIME_DAYS: std::ops::RangeInclusive<i64> = 1..=3650;
/// The range of `disableUnusedAfterDays`.
pub const UNUSED_DAYS: std::ops::RangeInclusive<i64> = 30..=730;
/// The range of `maxKeysPerOwner`.
pub const KEYS_PER_OWNER: std::ops::RangeInclusive<i64> = 1..=10_000;
/// How long before an unused key is switched off its owner is warned.
pub const UNUSED_WARNING: Duration = Duration::days(7);

/// The rules, as the tenant set them; every field off by default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyPolicy {
    /// A new or rotated key must expire within this many days.
    pub max_lifetime_days: Option<i64>,
    /// A key must have an expiry.
    pub require_expiry: bool,
    /// A key must name its permissions (no "Full access").
    pub require_restrictions: bool,
    /// The longest overlap a rotation may keep the old secret for, in seconds.
    pub max_overlap_seconds: Option<i64>,
    /// A key unused this many days is switched off.
    pub disable_unused_after_days: Option<i64>,
    /// Most keys one owner may have.
    pub max_keys_per_owner: Option<i64>,
}

/// A rule a key breaks, by its name in the policy.
pub type RuleName = &'static str;

/// A refused input under the policy: the field it concerns and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRefusal {
    /// The input field (`expiresAt`, `restrictions.permissions`, `overlapSeconds`, `ownerId`).
    pub field: &'static str,
    /// The rule's name and value, in a sentence.
    pub message: String,
}

fn out_of_range(field: &'static str, range: &std::ops::RangeInclusive<i64>) -> (&'static str, Violation) {
    let message = format!("Must be between {} and {}, or null for none.", range.start(), range.end());
    (field, Violation::new(ViolationCode::Invalid, message))
}

impl KeyPolicy {
    /// Checks each bound's range; problems name their field.
    pub fn check(&self) -> Result<(), Vec<(&'static str, Violation)>> {
        let mut problems = Vec::new();
        let in_range =
            |value: Option<i64>, range: &std::ops::RangeInclusive<i64>| value.is_none_or(|v| range.contains(&v));
        if !in_range(self.max_lifetime_days, &LIFETIME_DAYS) {
            problems.push(out_of_range("maxLifetimeDays", &LIFETIME_DAYS));
        }
        if !in_range(self.max_overlap_seconds, &(0..=crate::lifecycle::MAX_OVERLAP_SECS)) {
            problems.push(out_of_range("maxOverlapSeconds", &(0..=crate::lifecycle::MAX_OVERLAP_SECS)));
        }
        if !in_range(self.disable_unused_after_days, &UNUSED_DAYS) {
            problems.push(out_of_range("disableUnusedAfterDays", &UNUSED_DAYS));
        }
        if !in_range(self.max_keys_per_owner, &KEYS_PER_OWNER) {
            problems.push(out_of_range("maxKeysPerOwner", &KEYS_PER_OWNER));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    /// The rules in words, for mail and the audit trail ("no rules" when none).
    pub fn describe(&self) -> String {
        let mut rules = Vec::new();
        if let Some(days) = self.max_lifetime_days {
            rules.push(format!("keys expire within {days} days"));
        } else if self.require_expiry {
            rules.push("keys must have an expiry".to_owned());
        }
        if self.require_restrictions {
            rules.push("keys must name their permissions".to_owned());
        }
        if let Some(seconds) = self.max_overlap_seconds {
            rules.push(format!("a rotation keeps the old secret at most {seconds} s"));
        }
        if let Some(days) = self.disable_unused_after_days {
            rules.push(format!("keys unused for {days} days are switched off"));
        }
        if let Some(max) = self.max_keys_per_owner {
            rules.push(format!("at most {max} keys per owner"));
        }
        if rules.is_empty() { "no rules".to_owned() } else { rules.join("; ") }
    }

    /// The latest expiry a key made or rotated at `now` may have.
    /// (Never beyond the expiry any key may have, a year ahead.)
    pub fn latest_expiry(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.max_lifetime_days.map(|days| now + Duration::days(days.min(crate::lifecycle::MAX_EXPIRY_AHEAD_DAYS)))
    }

    /// Whether a key's expiry must be set.
    pub fn expiry_required(&self) -> bool {
        self.require_expiry || self.max_lifetime_days.is_some()
    }

    /// What the expiry `given` for a key made or rotated at `now` breaks.
    pub fn check_expiry(&self, given: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<PolicyRefusal> {
        let refusal = |message: String| Some(PolicyRefusal { field: "expiresAt", message });
        match (given, self.latest_expiry(now)) {
            (None, Some(_)) | (None, None) if self.expiry_required() => {
                refusal(format!("Your organisation's key policy requires an expiry{}.", self.lifetime_phrase()))
            }
            (Some(at), Some(latest)) if at > latest => refusal(format!(
                "Your organisation's key policy allows keys to live at most {} days (maxLifetimeDays).",
                self.max_lifetime_days.unwrap_or_default()
            )),
            _ => None,
        }
    }

    fn lifetime_phrase(&self) -> String {
        match self.max_lifetime_days {
            Some(days) => format!(" within {days} days (maxLifetimeDays)"),
            None => " (requireExpiry)".to_owned(),
        }
    }

    /// What restrictions naming `permissions` (none: full access) break.
    pub fn check_permissions(&self, full_access: bool) -> Option<PolicyRefusal> {
        (self.require_restrictions && full_access).then(|| PolicyRefusal {
            field: "restrictions.permissions",
            message: "Your organisation's key policy requires a key to name its permissions; full access is not \
                      allowed (requireRestrictions)."
                .to_owned(),
        })
    }

    /// What a rotation's overlap of `seconds` breaks.
    pub fn check_overlap(&self, seconds: i64) -> Option<PolicyRefusal> {
        let max = self.max_overlap_seconds?;
        (seconds > max).then(|| PolicyRefusal {
            field: "overlapSeconds",
            message: format!(
                "Your organisation's key policy keeps an old secret working at most {max} seconds (maxOverlapSeconds)."
            ),
        })
    }

    /// What one more key for an owner who has `owned` breaks.
    pub fn check_owner_count(&self, owned: u64, field: &'static str) -> Option<PolicyRefusal> {
        let max = self.max_keys_per_owner?;
        (owned >= u64::try_from(max).unwrap_or(u64::MAX)).then(|| PolicyRefusal {
            field,
            message: format!("Your organisation's key policy allows at most {max} keys per owner (maxKeysPerOwner)."),
        })
    }

    /// The expiry a rotation at `now` gives a key when none is asked for:
    /// its current one if that keeps the policy, else the latest the policy
    /// allows (a key that never expired gets one). `None`: never, when the
    /// policy does not ask for one.
    pub fn rotation_expiry(&self, current: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let latest = self.latest_expiry(now);
        match (current.filter(|at| *at > now), latest) {
            (Some(at), Some(latest)) => Some(at.min(latest)),
            (Some(at), None) => Some(at),
            (None, latest) => latest,
        }
    }

    /// The rules `key` breaks at `now`, by name (`maxLifetimeDays`,
    /// `requireExpiry`, `requireRestrictions`). A key breaks the lifetime
    /// rule when it would still work more than `maxLifetimeDays` from now
    /// (no expiry, or a later one): the bound a rotation now would give it.
    pub fn violations(&self, key: &ApiKey, now: DateTime<Utc>) -> Vec<RuleName> {
        let mut broken = Vec::new();
        if let Some(latest) = self.latest_expiry(now)
            && key.expires_at.is_none_or(|at| at > latest)
        {
            broken.push("maxLifetimeDays");
        }
        if self.require_expiry && key.expires_at.is_none() {
            broken.push("requireExpiry");
        }
        if self.require_restrictions && key.restrictions.permissions.is_none() {
            broken.push("requireRestrictions");
        }
        broken
    }

    /// What a key breaking the policy at `now` looks like, for a search;
    /// none when no rule can be broken by an existing key.
    pub fn breaches(&self, now: DateTime<Utc>) -> Option<PolicyBreaches> {
        let breaches = PolicyBreaches {
            without_expiry: self.expiry_required(),
            expiring_after: self.latest_expiry(now),
            without_permissions: self.require_restrictions,
        };
        (breaches.without_expiry || breaches.without_permissions).then_some(breaches)
    }
}

/// The keys that break a policy (any of these holds): the same rules as
/// [`KeyPolicy::violations`], as a store can search for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyBreaches {
    /// Keys that never expire.
    pub without_expiry: bool,
    /// Keys that expire after this.
    pub expiring_after: Option<DateTime<Utc>>,
    /// Keys with full access (no permissions named).
    pub without_permissions: bool,
}

/// What the unused-key rule asks of a key now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnusedStep {
    /// Nothing yet.
    Wait,
    /// Warn its owner that it is switched off at this time.
    Warn(UnusedWarning),
    /// Switch it off (the warning went out at least a week ago).
    Disable,
}

impl ApiKey {
    /// Since when the key has not been used: its last successful
    /// verification, its creation, or its last enabling, whichever is latest.
    pub fn idle_since(&self) -> DateTime<Utc> {
        [self.last_used_at, self.enabled_at].into_iter().flatten().fold(self.created_at, DateTime::max)
    }
}

impl KeyPolicy {
    /// The earliest idle start at which an enabled key is due a step at
    /// `now` (keys idle since before it); none without the rule.
    pub fn unused_due_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Some(now - Duration::days(self.disable_unused_after_days?) + UNUSED_WARNING)
    }

    /// What the unused-key rule asks of `key` at `now`: a warning a week
    /// before its `disableUnusedAfterDays` are up, then disabling — never
    /// sooner than a week after the warning, so a rule set over keys long
    /// unused warns first. A use or an enabling since the warning starts over.
    pub fn unused_step(&self, key: &ApiKey, now: DateTime<Utc>) -> UnusedStep {
        let Some(days) = self.disable_unused_after_days else { return UnusedStep::Wait };
        if key.disabled_at.is_some() {
            return UnusedStep::Wait;
        }
        let idle_since = key.idle_since();
        let deadline = idle_since + Duration::days(days);
        match key.unused_warning.filter(|w| w.idle_since == idle_since) {
            Some(warning) if now >= deadline.max(warning.disable_at) => UnusedStep::Disable,
            Some(_) => UnusedStep::Wait,
            None if now >= deadline - UNUSED_WARNING => {
                UnusedStep::Warn(UnusedWarning { idle_since, disable_at: deadline.max(now + UNUSED_WARNING) })
            }
            None => UnusedStep::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap() + Duration::days(days)
    }

    #[test]
    fn ranges_are_checked_by_field() {
        assert!(KeyPolicy::default().check().is_ok());
        let bad = KeyPolicy {
            max_lifetime_days: Some(0),
            max_overlap_seconds: Some(604_801),
            disable_unused_after_days: Some(29),
            max_keys_per_owner: Some(10_001),
            ..KeyPolicy::default()
        };
        let fields: Vec<_> = bad.check().unwrap_err().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["maxLifetimeDays", "maxOverlapSeconds", "disableUnusedAfterDays", "maxKeysPerOwner"]);
    }

    #[test]
    fn expiry_overlap_permissions_and_counts_are_held_to_the_rules() {
        let policy = KeyPolicy {
            max_lifetime_days: Some(90),
            require_restrictions: true,
            max_overlap_seconds: Some(3600),
            max_keys_per_owner: Some(2),
            ..KeyPolicy::default()
        };
        assert!(policy.check_expiry(None, at(0)).unwrap().message.contains("90"));
        assert!(policy.check_expiry(Some(at(91)), at(0)).is_some());
        assert!(policy.check_expiry(Some(at(90)), at(0)).is_none());
        assert!(KeyPolicy::default().check_expiry(None, at(0)).is_none());
        let required = KeyPolicy { require_expiry: true, ..KeyPolicy::default() };
        assert!(required.check_expiry(None, at(0)).unwrap().message.contains("requireExpiry"));
        assert!(policy.check_permissions(true).is_some() && policy.check_permissions(false).is_none());
        assert!(policy.check_overlap(3601).is_some() && policy.check_overlap(3600).is_none());
        assert!(policy.check_owner_count(2, "ownerId").is_some() && policy.check_owner_count(1, "ownerId").is_none());
        assert_eq!(policy.rotation_expiry(None, at(0)), Some(at(90)));
        assert_eq!(policy.rotation_expiry(Some(at(10)), at(0)), Some(at(10)));
        assert_eq!(policy.rotation_expiry(Some(at(200)), at(0)), Some(at(90)));
        assert_eq!(KeyPolicy::default().rotation_expiry(None, at(0)), None);
    }

    fn unused_key(created: i64, used: Option<i64>) -> ApiKey {
        let nil = uuid::Uuid::nil();
        ApiKey {
            last_used_at: used.map(at),
            ..ApiKey::example(crate::ApiKeyId(nil), crate::TenantId(nil), at(created))
        }
    }

    #[test]
    fn an_unused_key_is_warned_a_week_before_then_switched_off() {
        let policy = KeyPolicy { disable_unused_after_days: Some(30), ..KeyPolicy::default() };
        let mut key = unused_key(0, Some(10));
        assert_eq!(policy.unused_due_before(at(33)), Some(at(10)));
        assert_eq!(policy.unused_step(&key, at(32)), UnusedStep::Wait);
        let warning = UnusedWarning { idle_since: at(10), disable_at: at(40) };
        assert_eq!(policy.unused_step(&key, at(33)), UnusedStep::Warn(warning));
        key.unused_warning = Some(warning);
        assert_eq!(policy.unused_step(&key, at(39)), UnusedStep::Wait);
        assert_eq!(policy.unused_step(&key, at(40)), UnusedStep::Disable);
        // A use after the warning starts the clock over.
        key.last_used_at = Some(at(35));
        assert_eq!(policy.unused_step(&key, at(40)), UnusedStep::Wait);
        // So does enabling it.
        key.enabled_at = Some(at(70));
        assert_eq!(key.idle_since(), at(70));
        // Without the rule, nothing.
        assert_eq!(KeyPolicy::default().unused_step(&unused_key(0, None), at(999)), UnusedStep::Wait);
    }

    #[test]
    fn a_rule_set_over_a_long_unused_key_warns_a_week_ahead() {
        let policy = KeyPolicy { disable_unused_after_days: Some(30), ..KeyPolicy::default() };
        let mut key = unused_key(0, None);
        let UnusedStep::Warn(warning) = policy.unused_step(&key, at(200)) else { panic!("a warning") };
        assert_eq!(warning, UnusedWarning { idle_since: at(0), disable_at: at(207) });
        key.unused_warning = Some(warning);
        assert_eq!(policy.unused_step(&key, at(206)), UnusedStep::Wait);
        assert_eq!(policy.unused_step(&key, at(207)), UnusedStep::Disable);
    }

    #[test]
    fn the_stored_form_round_trips_and_tolerates_missing_fields() {
        let policy = KeyPolicy { max_lifetime_days: Some(30), require_expiry: true, ..KeyPolicy::default() };
        let stored = serde_json::to_string(&policy).unwrap();
        assert_eq!(serde_json::from_str::<KeyPolicy>(&stored).unwrap(), policy);
        assert_eq!(serde_json::from_str::<KeyPolicy>("{}").unwrap(), KeyPolicy::default());
    }
}
