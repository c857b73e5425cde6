//! Who is calling: admins with a signed JWT, integrations with an API key.

use latchkey_domain::admin_token::TokenError;
use latchkey_domain::{Cloud, Tenant, User, policy};

use crate::error::AppError;
use crate::keys::KeyView;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub enum Principal {
    /// A user with an admin token, acting in one cloud.
    Admin {
        /// The user, as stored (its role comes from the database).
        user: User,
        /// Its tenant.
        tenant: Tenant,
        /// The cloud named in the token.
        cloud: Cloud,
    },
    /// An integration presenting an API key; valid in both clouds of its tenant.
    Integration {
        /// The key, with its users.
        key: Box<KeyView>,
        /// Its tenant.
        tenant: Tenant,
    },
}

impl Principal {
    /// The caller's tenant.
    pub fn tenant(&self) -> &Tenant {
        match self {
            Principal::Admin { tenant, .. } | Principal::Integration { tenant, .. } => tenant,
        }
    }

    /// The clouds the caller may act in.
    pub fn clouds(&self) -> Vec<Cloud> {
        match self {
            Principal::Admin { cloud, .. } => vec![*cloud],
            Principal::Integration { key, .. } => policy::clouds_of_api_keys()
                .iter()
                .copied()
                .filter(|cloud| key.key.restrictions.clouds.contains(cloud))
                .collect(),
        }
    }
}

/// The outcome of authentication, attached to each request.
#[derive(Clone, Debug)]
pub enum Authentication {
    /// No `Authorization` header.
    Anonymous,
    /// A verified caller.
    Authenticated(Principal),
    /// Credentials were presented and refused; the reason is safe to show.
    Refused(String),
    /// A working key over its limits or out of credits
    /// (`RATE_LIMIT_EXCEEDED`, `USAGE_EXCEEDED`).
    OverLimit(AppError),
}

impl Authentication {
    /// The caller, or `UNAUTHENTICATED`.
    pub fn principal(&self) -> Result<&Principal, AppError> {
        match self {
            Authentication::Authenticated(p) => Ok(p),
            Authentication::Anonymous => {
                Err(AppError::Unauthenticated("Authentication required: send `Authorization: Bearer <token>`.".into()))
            }
            Authentication::Refused(reason) => Err(AppError::Unauthenticated(reason.clone())),
            Authentication::OverLimit(error) => Err(error.clone()),
        }
    }

    /// The admin who may manage keys, or `UNAUTHENTICATED` / `FORBIDDEN`.
    pub(crate) fn key_manager(&self) -> Result<&User, AppError> {
        match self.principal()? {
            Principal::Admin { user, cloud, .. } if policy::may_manage_keys(user.role, *cloud) => Ok(user),
            Principal::Admin { .. } => Err(AppError::Forbidden(
                "Only internal admins acting in the employee cloud may manage API keys.".into(),
            )),
            Principal::Integration { .. } => {
                Err(AppError::Forbidden("API keys cannot be used to manage API keys; sign in as an admin.".into()))
            }
        }
    }
}

/// The token of a `Bearer` header (scheme case-insensitive).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What a refused admin token (shared-secret or OIDC) tells its caller.
pub(crate) fn token_refusal(e: TokenError) -> String {
    match e {
        TokenError::Expired => "The token has expired; sign in again.".into(),
        TokenError::LifetimeTooLong => "The token's lifetime is longer than this server accepts.".into(),
        TokenError::Issuer | TokenError::Audience => {
            "The token was not issued for this service: its `iss` and `aud` claims must name it.".into()
        }
        TokenError::UnknownKey => "The token is signed with a key the identity provider does not publish.".into(),
        TokenError::MissingClaim(claim) => format!("The token lacks the claim {claim}."),
        TokenError::Malformed | TokenError::Algorithm | TokenError::Signature | TokenError::NotYetValid => {
            "The token is not valid.".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token(""), None);
    }
}
