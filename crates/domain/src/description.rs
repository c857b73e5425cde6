//! Rules for key descriptions and for description searches.

use crate::error::{Violation, ViolationCode};

/// Longest description, in Unicode scalar values.
pub const MAX_DESCRIPTION_CHARS: usize = 255;

/// A validated key description: trimmed, 1..=255 characters, no control,
/// line-separator or bidirectional-override characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description(String);

/// Why a description was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    /// Empty after trimming.
    #[error("Description can't be blank.")]
    Blank,
    /// Over [`MAX_DESCRIPTION_CHARS`].
    #[error("Description is too long (maximum is 255 characters).")]
    TooLong,
    /// Contains a control or invisible formatting character.
    #[error("Description can't contain control characters or line breaks.")]
    Invalid,
}

/// Characters refused besides Unicode control characters (Cc): line and
/// paragraph separators, and the bidirectional overrides and isolates that can
/// make text display differently from what it is.
fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Characters that show nothing: format characters (Unicode `Cf`: soft
/// hyphen, the Arabic letter mark, zero-width space/joiners, LRM/RLM, word
/// joiner and invisible operators, interlinear annotation marks, tags), the
/// combining grapheme joiner, and the blank fillers of Hangul and Braille.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// Whether `text` shows nothing: only spaces and invisible characters. Such
/// text is blank wherever it is shown (descriptions, names).
pub fn shows_nothing(text: &str) -> bool {
    text.chars().all(|c| c.is_whitespace() || is_invisible(c))
}

impl Description {
    /// Validates and normalises (trims) user input. A description that
    /// shows nothing (only spaces and invisible characters) is blank.
    pub fn parse(input: &str) -> Result<Self, DescriptionError> {
        let trimmed = input.trim();
        if shows_nothing(trimmed) {
            return Err(DescriptionError::Blank);
        }
        if trimmed.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(DescriptionError::TooLong);
        }
        if trimmed.chars().any(is_forbidden) {
            return Err(DescriptionError::Invalid);
        }
        Ok(Description(trimmed.to_owned()))
    }

    /// The description.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The folded form used for case-insensitive search.
    pub fn folded(&self) -> String {
        fold(&self.0)
    }

    /// The description as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl From<DescriptionError> for Violation {
    fn from(e: DescriptionError) -> Self {
        let code = match e {
            DescriptionError::Blank => ViolationCode::Blank,
            DescriptionError::TooLong => ViolationCode::TooLong,
            DescriptionError::Invalid => ViolationCode::Invalid,
        };
        Violation::new(code, e.to_string())
    }
}

/// Case folding shared by stored descriptions and search terms (Unicode-aware,
/// so it behaves the same on every database).
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// A description search: trimmed, folded, at most 255 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchTerm(String);

impl SearchTerm {
    /// `Ok(None)` for an empty search; `Err` when it is too long.
    pub fn parse(input: &str) -> Result<Option<Self>, DescriptionError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        if trimmed.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(DescriptionError::TooLong);
        }
        Ok(Some(SearchTerm(fold(trimmed))))
    }

    /// The folded term.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_accepts_unicode() {
        assert_eq!(Description::parse("  Salesforce sync  ").unwrap().as_str(), "Salesforce sync");
        assert_eq!(Description::parse("Zürich — 東京 🚀").unwrap().as_str(), "Zürich — 東京 🚀");
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(Description::parse(&"é".repeat(255)).is_ok());
        assert_eq!(Description::parse(&"é".repeat(256)), Err(DescriptionError::TooLong));
        assert!(Description::parse(&"a".repeat(255)).is_ok());
        assert_eq!(Description::parse(&"a".repeat(256)), Err(DescriptionError::TooLong));
        // surrounding whitespace does not count
        assert!(Description::parse(&format!("  {}  ", "a".repeat(255))).is_ok());
    }

    #[test]
    fn refuses_blank_and_control_characters() {
        for blank in
            ["", "   ", "\t\n", "\u{3000}", "\u{200b}\u{200b}", " \u{200e} \u{200f}", "\u{2060}\u{3164}\u{e0041}"]
        {
            assert_eq!(Description::parse(blank), Err(DescriptionError::Blank), "{blank:?}");
        }
        // Invisible characters between visible ones are text (e.g. emoji joiners).
        assert_eq!(Description::parse("a\u{200d}b").unwrap().as_str(), "a\u{200d}b");
        for bad in ["a\r\nBcc: x@evil", "a\u{0}b", "a\u{7f}", "x\u{202E}gpj.exe", "a\u{2028}b", "a\u{1b}[31m"] {
            assert_eq!(Description::parse(bad), Err(DescriptionError::Invalid), "{bad:?}");
        }
        // markup is just text
        assert!(Description::parse("<script>alert(1)</script>").is_ok());
    }

    #[test]
    fn search_terms_fold_case() {
        assert_eq!(SearchTerm::parse("  SaLeS ").unwrap().unwrap().as_str(), "sales");
        assert_eq!(SearchTerm::parse("ÄRGER").unwrap().unwrap().as_str(), "ärger");
        assert_eq!(SearchTerm::parse("   ").unwrap(), None);
        assert!(SearchTerm::parse(&"a".repeat(256)).is_err());
    }
}
