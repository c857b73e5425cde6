//! What can go wrong, apart from a refused key (which is an answer).

/// Why a verification has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Latchkey could not be asked (unreachable, timed out, or answering
    /// 5xx) and no cached answer may be used: refuse the request with 503.
    Unavailable(String),
    /// Latchkey refused the question itself (HTTP 4xx): the request context
    /// is wrong (e.g. more than 64 permissions), a configuration error.
    Rejected(String),
    /// The verifier could not be built.
    Config(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unavailable(why) => write!(f, "Latchkey is unavailable: {why}"),
            Error::Rejected(why) => write!(f, "Latchkey rejected the verification: {why}"),
            Error::Config(why) => write!(f, "the verifier is misconfigured: {why}"),
        }
    }
}

impl std::error::Error for Error {}
