//! Typed identifiers. All are UUIDs; API keys and events use time-ordered v7 ids.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

uuid_id!(
    /// A tenant: one company with an employee cloud and a customer cloud.
    TenantId
);
uuid_id!(
    /// A user of a tenant: an admin or an integration user.
    UserId
);
uuid_id!(
    /// An API key record. Stable across rotations.
    ApiKeyId
);
uuid_id!(
    /// One notice (generated, rotated, deleted) in the outbox.
    NoticeId
);
uuid_id!(
    /// A tenant's webhook endpoint.
    WebhookEndpointId
);
uuid_id!(
    /// One event's delivery to one endpoint (its `webhook-id` is `msg_` and this).
    WebhookDeliveryId
);

/// The counter that orders ids minted in the same millisecond by this process.
static SEQUENCE: std::sync::Mutex<uuid::ContextV7> = std::sync::Mutex::new(uuid::ContextV7::new());

/// A time-ordered UUID (v7) minted for the given instant, so that id order is
/// creation order. Ids minted in the same millisecond by one process follow
/// each other in the order they were minted (a counter, as RFC 9562 allows),
/// so a key's audit trail and events keep their order even at one instant.
pub fn time_ordered_uuid(at: DateTime<Utc>) -> Uuid {
    let secs = u64::try_from(at.timestamp()).unwrap_or(0);
    let sequence = SEQUENCE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let ts = uuid::Timestamp::from_unix(&*sequence, secs, at.timestamp_subsec_nanos());
    Uuid::new_v7(ts)
}

impl ApiKeyId {
    /// A new key id for a key created at `at`.
    pub fn new_at(at: DateTime<Utc>) -> Self {
        Self(time_ordered_uuid(at))
    }
}

impl NoticeId {
    /// A new event id for an event that happened at `at`.
    pub fn new_at(at: DateTime<Utc>) -> Self {
        Self(time_ordered_uuid(at))
    }
}

impl WebhookEndpointId {
    /// A new endpoint id.
    pub fn new_at(at: DateTime<Utc>) -> Self {
        Self(time_ordered_uuid(at))
    }
}

impl WebhookDeliveryId {
    /// A new delivery id for an event that happened at `at`.
    pub fn new_at(at: DateTime<Utc>) -> Self {
        Self(time_ordered_uuid(at))
    }
}

impl TenantId {
    /// A new random tenant id.
    pub fn new_at(at: DateTime<Utc>) -> Self {
        Self(time_ordered_uuid(at))
    }
}

impl UserId {
    /// A new user id.
    pub fn new_at(at: DateTime<Utc>) -> Self {
        Self(time_ordered_uuid(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_minted_later_sort_later() {
        let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let a = ApiKeyId::new_at(t0);
        let b = ApiKeyId::new_at(t0 + chrono::Duration::milliseconds(1));
        assert!(a < b);
        assert_eq!(a.as_uuid().get_version_num(), 7);
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!("not-a-uuid".parse::<ApiKeyId>().is_err());
        assert!("".parse::<ApiKeyId>().is_err());
    }

    #[test]
    fn ids_minted_at_one_instant_keep_their_order() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let ids: Vec<Uuid> = (0..1000).map(|_| time_ordered_uuid(at)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(time_ordered_uuid(at + chrono::Duration::milliseconds(1)) > ids[999]);
    }
}
