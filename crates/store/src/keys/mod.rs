//! API keys: the key row (`row`), the key table (`table`), credential
//! lookup for verification (`credentials`) and the writes of the key
//! lifecycle inside a unit of work (`writes`).

mod credentials;
pub(crate) mod row;
mod table;
mod writes;

pub use credentials::StoredCredential;
pub(crate) use row::api_key;
pub use row::{NewCredential, NewKey};
pub use table::{KeyCursor, KeyOrderField, KeyPage, KeyQuery, NoticeStage, SelfRotationState};
pub use writes::{ImportState, Rotation};

#[cfg(test)]
mod tests {
    use crate::contains_pattern;

    #[test]
    fn like_wildcards_in_search_terms_are_escaped() {
        let built = format!("{:?}", contains_pattern("50%_off\\"));
        assert!(built.contains(r"%50\\%\\_off\\\\%"), "{built}");
    }
}
