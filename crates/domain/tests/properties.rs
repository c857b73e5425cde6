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
