//! Signals about keys whose cached verifications no longer hold: sent
//! between replicas when a change commits, and to the services that cache
//! verifications themselves (the verification stream).

use crate::{ApiKeyId, TenantId};

crate::string_enum! {
    /// Why a key's cached verifications must go.
    pub enum KeySignalKind {
        /// Its secret no longer verifies as it did: rotated, deleted,
        /// disabled, compromised, its previous secret ended, its owner
        /// deactivated.
        Revoked = "revoked",
        /// It still verifies, but the answer changed: restrictions, limits,
        /// credits, expiry, enabled again, its owner's role or limits.
        Changed = "changed",
    }
}

/// A key whose cached verifications no longer hold, with its tenant (so a
/// tenant's stream carries only its own keys). Never a secret or a hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySignal {
    /// The key.
    pub key_id: ApiKeyId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Why.
    pub kind: KeySignalKind,
}

impl KeySignal {
    /// The text sent between replicas: `<key id> <tenant id> <kind>`.
    pub fn to_wire(&self) -> String {
        format!("{} {} {}", self.key_id, self.tenant_id, self.kind)
    }

    /// Reads [`KeySignal::to_wire`]; `None` for anything else (a replica
    /// of an earlier version sends the key id alone).
    pub fn from_wire(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let (Some(key), Some(tenant), Some(kind), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(KeySignal {
            key_id: key.parse().ok()?,
            tenant_id: tenant.parse().ok()?,
            kind: KeySignalKind::parse(kind)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_reads_back_and_refuses_anything_else() {
        let signal = KeySignal {
            key_id: ApiKeyId(uuid::Uuid::from_u128(1)),
            tenant_id: TenantId(uuid::Uuid::from_u128(2)),
            kind: KeySignalKind::Changed,
        };
        assert_eq!(KeySignal::from_wire(&signal.to_wire()), Some(signal));
        let key_only = signal.key_id.to_string();
        assert_eq!(KeySignal::from_wire(&key_only), None);
        assert_eq!(KeySignal::from_wire(&format!("{} extra", signal.to_wire())), None);
        assert_eq!(KeySignal::from_wire(&signal.to_wire().replace("changed", "gone")), None);
    }
}
