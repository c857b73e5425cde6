//! The rule for names (of tenants and users, and external ids) and the loose
//! check of email addresses, written once for every front end.

use crate::description::shows_nothing;
use crate::error::{Violation, ViolationCode};

/// Longest name, in Unicode scalar values.
pub const MAX_NAME_CHARS: usize = 255;

/// `raw` trimmed, if it is a name: 1 to 255 characters, no control
/// characters, not all of them invisible. A refusal's message completes a
/// sentence that starts with what was named (`--name must …`).
pub fn name(raw: &str) -> Result<&str, Violation> {
    let trimmed = raw.trim();
    if shows_nothing(trimmed) {
        Err(Violation::new(ViolationCode::Blank, "must not be blank or invisible"))
    } else if trimmed.chars().count() > MAX_NAME_CHARS {
        Err(Violation::new(ViolationCode::TooLong, format!("must be at most {MAX_NAME_CHARS} characters")))
    } else if trimmed.chars().any(char::is_control) {
        Err(Violation::new(ViolationCode::Invalid, "must not contain control characters"))
    } else {
        Ok(trimmed)
    }
}

/// A deliberately loose check: something@something, at most 320 bytes, no
/// spaces, controls or the characters that separate addresses in a header.
pub fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && s.len() <= 320
        && !s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_visible_and_without_controls() {
        assert_eq!(name("  Acme  "), Ok("Acme"));
        let code = |raw: &str| name(raw).map(|_| ()).map_err(|v| v.code);
        assert_eq!(code(" \u{200B} "), Err(ViolationCode::Blank));
        assert_eq!(code(&"x".repeat(256)), Err(ViolationCode::TooLong));
        assert_eq!(name(&"é".repeat(255)), Ok("é".repeat(255).as_str()));
        assert_eq!(code("a\u{7}b"), Err(ViolationCode::Invalid));
    }

    #[test]
    fn emails_are_checked_loosely() {
        assert!(looks_like_email("ada@acme.example"));
        for bad in ["ada", "@acme", "ada@", "a da@acme", "<ada@acme>", "a,b@c"] {
            assert!(!looks_like_email(bad), "{bad}");
        }
    }
}
