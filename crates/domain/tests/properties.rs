//! Property tests: the parsers that face user input never panic, and accept
//! exactly what their rules say.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use chrono::{TimeZone, Utc};
use latchkey_domain::admin_token::AdminTokenKey;
use latchkey_domain::description::MAX_DESCRIPTION_CHARS;
use latchkey_domain::secret::{KEY_LEN, with_checksum};
use latchkey_domain::{ApiKeySecret, Description, ParsedKey, SearchTerm};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn key_parser_never_panics(input in ".*") {
        let _ = ParsedKey::parse(&input);
    }

    #[test]
    fn key_parser_never_panics_on_near_keys(body in "lk_[A-Za-z0-9é_-]{40,55}") {
        let _ = ParsedKey::parse(&body);
        if body.len() >= 49 && body.is_char_boundary(49) {
            let _ = ParsedKey::parse(&with_checksum(&body[..49]));
        }
    }

    #[test]
    fn well_formed_keys_parse_and_any_single_change_is_caught(position in 3usize..KEY_LEN, replacement in "[A-Za-z0-9]") {
        let key = ApiKeySecret::generate().unwrap();
        let s = key.expose();
        prop_assert!(ParsedKey::parse(s).is_ok());
        let mut changed = s.to_owned();
        changed.replace_range(position..position + 1, &replacement);
        if changed != s {
            prop_assert!(ParsedKey::parse(&changed).is_err(), "{changed}");
        }
    }

    #[test]
    fn description_rules_hold_for_any_input(input in any::<String>()) {
        match Description::parse(&input) {
            Ok(d) => {
                let s = d.as_str();
                prop_assert_eq!(s, input.trim());
                prop_assert!(!s.is_empty());
                prop_assert!(s.chars().count() <= MAX_DESCRIPTION_CHARS);
                prop_assert!(!s.chars().any(char::is_control));
            }
            Err(_) => {
                let t = input.trim();
                let forbidden = |c: char| {
                    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
                };
                let refused_for_a_reason =
                    t.is_empty() || t.chars().count() > MAX_DESCRIPTION_CHARS || t.chars().any(forbidden);
                prop_assert!(refused_for_a_reason, "refused without a reason: {:?}", t);
            }
        }
        let _ = SearchTerm::parse(&input);
    }

    #[test]
    fn admin_token_verification_never_panics(token in ".*") {
        let key = AdminTokenKey::new(&[7u8; 32]).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        prop_assert!(key.verify(&token, now).is_err());
    }
}

mod restriction_decisions {
    //! The verifier's rule against a straightforward reference: strings for
    //! permissions, bit strings for networks, the documented order of checks.
    use std::net::IpAddr;

    use latchkey_domain::Cloud;
    use latchkey_domain::restrictions::{PERMISSIONS, PermissionSet, Refusal, RequestContext, Restrictions};
    use proptest::prelude::*;

    /// A few networks and addresses that overlap in interesting ways.
    const NETWORKS: &[&str] = &[
        "10.0.0.0/8",
        "10.1.0.0/16",
        "192.0.2.7",
        "0.0.0.0/0",
        "2001:db8::/32",
        "2001:db8::1/128",
        "::/0",
        "::ffff:198.51.100.0/120",
    ];
    const ADDRESSES: &[&str] = &[
        "10.1.2.3",
        "10.200.0.1",
        "192.0.2.7",
        "192.0.2.8",
        "2001:db8::1",
        "2001:db8::2",
        "2001:db9::1",
        "198.51.100.9",
        "::ffff:10.1.2.3",
    ];

    /// The address's bits, IPv4-mapped IPv6 read as IPv4.
    fn bits(ip: IpAddr) -> String {
        match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => bits(IpAddr::V4(v6.to_ipv4_mapped().unwrap())),
            IpAddr::V4(v4) => v4.octets().iter().map(|o| format!("{o:08b}")).collect(),
            IpAddr::V6(v6) => v6.octets().iter().map(|o| format!("{o:08b}")).collect(),
        }
    }

    fn reference_contains(network: &str, ip: IpAddr) -> bool {
        let (address, prefix) = network.split_once('/').unwrap_or((network, ""));
        let address: IpAddr = address.parse().unwrap();
        let net_bits = bits(address);
        let mapped = matches!(address, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        let prefix: usize = if prefix.is_empty() {
            net_bits.len()
        } else {
            prefix.parse::<usize>().unwrap() - if mapped { 96 } else { 0 }
        };
        let ip_bits = bits(ip);
        ip_bits.len() == net_bits.len() && ip_bits[..prefix] == net_bits[..prefix]
    }

    fn reference(
        permissions: &Option<Vec<&str>>,
        clouds: &[Cloud],
        networks: &[&str],
        owner: &[&str],
        cloud: Option<Cloud>,
        asked: &[&str],
        ip: Option<IpAddr>,
    ) -> Result<(), &'static str> {
        if cloud.is_some_and(|c| !clouds.contains(&c)) {
            return Err("CLOUD_NOT_ALLOWED");
        }
        if !networks.is_empty() && !ip.is_some_and(|ip| networks.iter().any(|n| reference_contains(n, ip))) {
            return Err("IP_NOT_ALLOWED");
        }
        let own: Vec<&str> = permissions.clone().unwrap_or_else(|| PERMISSIONS.iter().map(|p| p.name).collect());
        // A permission of one cloud is never granted in the other.
        let in_cloud = |a: &str| {
            cloud.is_none_or(|c| {
                PERMISSIONS.iter().find(|p| p.name == a).is_some_and(|p| p.cloud.is_none_or(|pc| pc == c))
            })
        };
        if asked.iter().any(|a| !(own.contains(a) && owner.contains(a) && in_cloud(a))) {
            return Err("INSUFFICIENT_PERMISSIONS");
        }
        Ok(())
    }

    fn names() -> impl Strategy<Value = Vec<&'static str>> {
        let mut all: Vec<&'static str> = PERMISSIONS.iter().map(|p| p.name).collect();
        all.push("users:delete");
        proptest::sample::subsequence(all.clone(), 0..=4)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn the_verifier_decides_as_the_reference_does(
            permissions in proptest::option::of(proptest::sample::subsequence(PERMISSIONS.iter().map(|p| p.name).collect::<Vec<_>>(), 0..=6)),
            clouds in proptest::sample::subsequence(Cloud::ALL.to_vec(), 1..=2),
            networks in proptest::sample::subsequence(NETWORKS.to_vec(), 0..=3),
            owner in proptest::sample::subsequence(PERMISSIONS.iter().map(|p| p.name).collect::<Vec<_>>(), 0..=PERMISSIONS.len()),
            cloud in proptest::option::of(proptest::sample::select(Cloud::ALL.to_vec())),
            asked in names(),
            ip in proptest::option::of(proptest::sample::select(ADDRESSES.to_vec())),
        ) {
            let given: Option<Vec<String>> = permissions.as_ref().map(|p| p.iter().map(|s| s.to_string()).collect());
            let given_networks: Vec<String> = networks.iter().map(|s| s.to_string()).collect();
            let outside_clouds = permissions.iter().flatten().any(|name| {
                PERMISSIONS.iter().find(|p| p.name == *name).is_some_and(|p| p.cloud.is_some_and(|c| !clouds.contains(&c)))
            });
            let parsed = Restrictions::parse(given.as_deref(), &clouds, &given_networks);
            prop_assert_eq!(parsed.is_err(), outside_clouds, "a permission outside the key's clouds is refused");
            let Ok(restrictions) = parsed else { return Ok(()) };
            let owner_may = PermissionSet::parse(owner.iter().copied()).unwrap();
            let ip: Option<IpAddr> = ip.map(|a| a.parse().unwrap());
            let decided = restrictions.decide(owner_may, &RequestContext::needing(cloud, asked.iter().copied(), ip));
            let expected = reference(&permissions, &clouds, &networks, &owner, cloud, &asked, ip);
            prop_assert_eq!(decided.as_ref().map(|_| ()).map_err(Refusal::code), expected);
            if let Err(Refusal::InsufficientPermissions { missing }) = decided {
                prop_assert!(!missing.is_empty());
                prop_assert!(missing.iter().all(|m| asked.contains(&m.as_str())));
            }
        }
    }
}
