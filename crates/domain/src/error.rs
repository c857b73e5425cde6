//! Validation outcomes shared by every layer; the GraphQL layer maps them to
//! `UserError`s with a stable code.

/// A stable reason code for a refused mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViolationCode {
    /// A required value is empty.
    Blank,
    /// A value is over its maximum length.
    TooLong,
    /// A value has the wrong form.
    Invalid,
    /// The thing named does not exist for this tenant.
    NotFound,
    /// The chosen owner may not own keys.
    InvalidOwner,
    /// The tenant has as many of these as it may have.
    LimitReached,
    /// The tenant's key policy does not allow it.
    Policy,
}

/// A refused input: a code and a human message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The stable code.
    pub code: ViolationCode,
    /// A message fit for an end user.
    pub message: String,
}

impl Violation {
    /// A violation with `code` and `message`.
    pub fn new(code: ViolationCode, message: impl Into<String>) -> Self {
        Violation { code, message: message.into() }
    }
}

/// Errors of the domain that are not user mistakes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DomainError {
    /// Randomness was unavailable.
    #[error(transparent)]
    Randomness(#[from] crate::secret::RandomnessUnavailable),
    /// Hashing failed.
    #[error(transparent)]
    Hashing(#[from] crate::hashing::HashingFailed),
}
