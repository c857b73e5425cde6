//! Webhooks as Standard Webhooks (standardwebhooks.com) defines them: the
//! event types Latchkey sends, signing secrets (`whsec_` + base64), the
//! `webhook-signature` of a delivery, the retry schedule, and which
//! addresses a delivery may never reach (no server-side request forgery).
//!
//! Pure: the caller resolves names, reads the clock and draws the jitter.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Duration;
use hmac::{Hmac, Mac};
use rand::TryRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::restrictions::Network;
use crate::secret::RandomnessUnavailable;

crate::string_enum! {
    /// What a webhook event is about.
    pub enum WebhookEventType {
        /// A key was generated.
        KeyCreated = "api_key.created",
        /// A key's secret was replaced.
        KeyRotated = "api_key.rotated",
        /// A key was deleted.
        KeyDeleted = "api_key.deleted",
        /// A key's description changed.
        KeyDescriptionChanged = "api_key.description_changed",
        /// A key was disabled.
        KeyDisabled = "api_key.disabled",
        /// A key was enabled.
        KeyEnabled = "api_key.enabled",
        /// A key expires in 7 days or in 1 day.
        KeyExpiring = "api_key.expiring",
        /// A key expired.
        KeyExpired = "api_key.expired",
        /// A key's restrictions changed.
        KeyRestrictionsChanged = "api_key.restrictions_changed",
        /// A key was given to another owner.
        KeyOwnerChanged = "api_key.owner_changed",
        /// A key was suspended: its owner can no longer own keys.
        KeySuspended = "api_key.suspended",
        /// A key was reported leaked.
        KeyCompromised = "api_key.compromised",
        /// A key's credits fell below 10 % of their allotment.
        KeyCreditsLow = "api_key.credits_low",
        /// A user was deactivated (their keys are suspended).
        UserDeactivated = "user.deactivated",
        /// A user was reactivated.
        UserReactivated = "user.reactivated",
        /// A test event, sent on request.
        Test = "webhook.test",
    }
}

impl WebhookEventType {
    /// What the type means, for people choosing what to receive.
    pub fn description(self) -> &'static str {
        match self {
            WebhookEventType::KeyCreated => "An API key was generated (or imported).",
            WebhookEventType::KeyRotated => {
                "An API key's secret was replaced; `previousSecretExpiresAt` says until when the old one works."
            }
            WebhookEventType::KeyDeleted => "An API key was deleted.",
            WebhookEventType::KeyDescriptionChanged => "An API key's description changed.",
            WebhookEventType::KeyDisabled => "An API key was disabled.",
            WebhookEventType::KeyEnabled => "An API key was enabled again.",
            WebhookEventType::KeyExpiring => "An API key expires in 7 days, or in 1 day.",
            WebhookEventType::KeyExpired => "An API key expired.",
            WebhookEventType::KeyRestrictionsChanged => {
                "An API key's permissions, clouds or allowed addresses changed."
            }
            WebhookEventType::KeyOwnerChanged => "An API key was given to another owner.",
            WebhookEventType::KeySuspended => "An API key was suspended because its owner can no longer own keys.",
            WebhookEventType::KeyCompromised => "An API key was reported leaked.",
            WebhookEventType::KeyCreditsLow => "An API key's credits fell below 10 % of their allotment.",
            WebhookEventType::UserDeactivated => "A user was deactivated; the keys they own are suspended.",
            WebhookEventType::UserReactivated => "A user was reactivated.",
            WebhookEventType::Test => "A test event, sent with `sendTestWebhook`.",
        }
    }
}

/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a signing secret (Standard Webhooks asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// An endpoint's signing secret: `whsec_` and the base64 of its key. Never
/// printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Zeroizing<String>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(whsec_…)")
    }
}

impl SigningSecret {
    /// A fresh secret from the operating system's random source.
    pub fn generate() -> Result<Self, RandomnessUnavailable> {
        let mut key = Zeroizing::new([0u8; SECRET_BYTES]);
        rand::rngs::SysRng.try_fill_bytes(key.as_mut()).map_err(|_| RandomnessUnavailable)?;
        Ok(SigningSecret(Zeroizing::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(key.as_ref())))))
    }

    /// A stored secret; `None` when it is not `whsec_` and base64 of 24 to 64 bytes.
    pub fn from_stored(stored: &str) -> Option<Self> {
        let key = STANDARD.decode(stored.strip_prefix(SECRET_PREFIX)?).ok()?;
        (24..=64).contains(&key.len()).then(|| SigningSecret(Zeroizing::new(stored.to_owned())))
    }

    /// The secret as shown once and stored.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn key(&self) -> Zeroizing<Vec<u8>> {
        let encoded = self.0.strip_prefix(SECRET_PREFIX).unwrap_or_default();
        Zeroizing::new(STANDARD.decode(encoded).unwrap_or_default())
    }

    /// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.key()) else { return String::new() };
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one `v1,…` per secret, space-separated
/// (during a rotation, the new secret's and the old one's).
pub fn signature_header(secrets: &[&SigningSecret], id: &str, timestamp: i64, body: &str) -> String {
    let signatures: Vec<String> = secrets.iter().map(|s| s.sign(id, timestamp, body)).collect();
    signatures.join(" ")
}

/// How long after the first attempt each retry comes, before jitter: 5 s,
/// 5 min, 30 min, 2 h, 5 h, then 10 h apart, about 3 days in all.
pub const RETRY_DELAYS: [Duration; 12] = [
    Duration::seconds(5),
    Duration::minutes(5),
    Duration::minutes(30),
    Duration::hours(2),
    Duration::hours(5),
    Duration::hours(10),
    Duration::hours(10),
    Duration::hours(10),
    Duration::hours(10),
    Duration::hours(10),
    Duration::hours(10),
    Duration::hours(10),
];

/// The wait before the next attempt after `failed` failed attempts, with
/// `jitter` in -1.0..=1.0 spreading it by up to ±10 %; `None` when the
/// retries are spent (the delivery has failed).
pub fn retry_delay(failed: usize, jitter: f64) -> Option<Duration> {
    let base = *RETRY_DELAYS.get(failed.checked_sub(1)?)?;
    let spread = base.num_milliseconds() as f64 * 0.1 * jitter.clamp(-1.0, 1.0);
    Some(base + Duration::milliseconds(spread as i64))
}

/// How long an endpoint may fail without a success before it is disabled.
pub const DISABLE_AFTER: Duration = Duration::days(5);

/// Whether a delivery may never be sent to `ip`: loopback, private,
/// link-local, carrier-grade NAT, multicast, unspecified, broadcast and
/// reserved ranges of IPv4 and IPv6, and IPv4 addresses embedded in IPv6
/// (mapped, compatible, NAT64) that are any of those.
pub fn is_forbidden_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network", 0.0.0.0 included
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments, 192.0.0/24
        || (a == 198 && (18..20).contains(&b)) // benchmarking, 198.18/15
        || a >= 240 // reserved, 240/4
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded_v4 = || Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96) forms reach an IPv4 address.
    if segments[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified()
        || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        return forbidden_v4(embedded_v4());
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (segments[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || segments[0] == 0x2001 && segments[1] == 0x0db8 // documentation, 2001:db8::/32
        || segments[0] == 0x0100 && segments[1..4] == [0, 0, 0] // discard-only, 100::/64
}

/// Who may be reached despite the address rule: host names (exact, without
/// case) and networks, from `LATCHKEY_WEBHOOK_ALLOW_HOSTS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
    networks: Vec<Network>,
}

impl AllowedHosts {
    /// Parses a comma-separated list of host names and CIDRs; an entry that
    /// is neither a network nor a plausible host name is an error naming it.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut allowed = AllowedHosts::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(network) = entry.parse::<Network>() {
                allowed.networks.push(network);
            } else if entry.len() <= 253
                && entry.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
            {
                allowed.names.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!("{entry:?} is neither a host name nor an address or CIDR block"));
            }
        }
        Ok(allowed)
    }

    /// Whether `host` (a name or an address) is listed: by name, or as an address in a listed network.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.names.iter().any(|n| n.eq_ignore_ascii_case(host))
            || host.parse::<IpAddr>().is_ok_and(|ip| self.allows_address(ip))
    }

    /// Whether `ip` is in a listed network.
    pub fn allows_address(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }
}

/// Why a delivery target is refused, for the admin who gave it.
pub fn refused_addresses(host: &str, resolved: &[IpAddr], allowed: &AllowedHosts) -> Option<String> {
    if allowed.allows_host(host) {
        return None;
    }
    if resolved.is_empty() {
        return Some(format!("{host} does not resolve to any address."));
    }
    resolved.iter().find(|ip| is_forbidden_address(**ip) && !allowed.allows_address(**ip)).map(|ip| {
        format!("{host} resolves to {ip}, an internal address; webhooks are delivered only to public addresses.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_reference_library() {
        // Signed with the `standardwebhooks` package from PyPI (1.0):
        // Webhook(secret).sign("msg_01", datetime.fromtimestamp(1767225600, utc), body).
        let secret = SigningSecret::from_stored("whsec_bGF0Y2hrZXktdGVzdC1zZWNyZXQtMDEyMzQ1Njc4OWFi").unwrap();
        let signed = secret.sign("msg_01", 1_767_225_600, r#"{"type":"webhook.test"}"#);
        assert_eq!(signed, "v1,SJ5vxzlJb1Zwc7CXOs6Tdq0VXfAxbq4UH6I9/KImnSk=");
        let fresh = SigningSecret::generate().unwrap();
        assert!(fresh.expose().starts_with("whsec_") && SigningSecret::from_stored(fresh.expose()).is_some());
        assert_eq!(format!("{fresh:?}"), "SigningSecret(whsec_…)", "never printed");
        let both = signature_header(&[&fresh, &secret], "msg_01", 1_767_225_600, "{}");
        assert_eq!(both.split(' ').count(), 2);
        for bad in ["", "whsec_", "whsec_c2hvcnQ=", "sk_bGF0Y2hrZXktdGVzdC1zZWNyZXQtMDEyMzQ1Njc4OWFi", "whsec_***"] {
            assert!(SigningSecret::from_stored(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn retries_spread_over_about_three_days() {
        assert_eq!(retry_delay(0, 0.0), None);
        assert_eq!(retry_delay(1, 0.0), Some(Duration::seconds(5)));
        assert_eq!(retry_delay(2, 1.0), Some(Duration::seconds(330)));
        assert_eq!(retry_delay(2, -1.0), Some(Duration::seconds(270)));
        assert_eq!(retry_delay(13, 0.0), None, "spent");
        let total: Duration = RETRY_DELAYS.iter().copied().sum();
        assert!(total > Duration::days(3) && total < Duration::days(4), "{total}");
    }

    #[test]
    fn internal_addresses_are_forbidden_in_every_form() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(is_forbidden_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:93.184.216.34", "64:ff9b::8.8.8.8"] {
            assert!(!is_forbidden_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn the_allow_list_lifts_the_rule_by_name_or_network() {
        let allowed = AllowedHosts::parse("receiver.internal, 127.0.0.0/8,::1").unwrap();
        assert!(allowed.allows_host("Receiver.Internal"));
        assert!(allowed.allows_host("127.0.0.1") && allowed.allows_host("[::1]"));
        assert!(!allowed.allows_host("other.internal"));
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(refused_addresses("receiver.internal", &[], &allowed), None);
        assert_eq!(refused_addresses("sneaky.example", &[loopback], &allowed), None, "an allowed network");
        let strict = AllowedHosts::default();
        assert!(refused_addresses("sneaky.example", &[loopback], &strict).unwrap().contains("internal address"));
        assert!(refused_addresses("nowhere.example", &[], &strict).unwrap().contains("does not resolve"));
        assert_eq!(refused_addresses("example.com", &["93.184.216.34".parse().unwrap()], &strict), None);
        assert!(AllowedHosts::parse("good.example, bad host").unwrap_err().contains("bad host"));
        assert_eq!(AllowedHosts::parse("").unwrap(), AllowedHosts::default());
    }

    #[test]
    fn every_event_type_has_a_name_and_a_description() {
        assert_eq!(WebhookEventType::ALL.len(), 16);
        for t in WebhookEventType::ALL {
            assert_eq!(WebhookEventType::parse(t.as_str()), Some(*t));
            assert!(t.description().ends_with('.'), "{t}");
        }
        assert_eq!(WebhookEventType::parse("api_key.exploded"), None);
    }
}
