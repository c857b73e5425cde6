//! Who is calling: admins with a signed JWT, integrations with an API key.

use latchkey_domain::admin_token::TokenError;
use latchkey_domain::{ApiKey, Cloud, Tenant, User, policy};

use std::net::IpAddr;

use crate::ApiState;
use crate::error::ApiError;
use crate::service::ServiceError;
use crate::verifier::VerifyOutcome;

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
        /// The key.
        key: ApiKey,
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
            Principal::Integration { .. } => Cloud::ALL.to_vec(),
        }
    }
}

/// The outcome of authentication, attached to each request. Resolvers that
/// need a caller turn anything but `Authenticated` into `UNAUTHENTICATED`.
#[derive(Clone, Debug)]
pub enum Authentication {
    /// No `Authorization` header.
    Anonymous,
    /// A verified caller.
    Authenticated(Principal),
    /// Credentials were presented and refused; the reason is safe to show.
    Refused(String),
}

impl Authentication {
    /// The caller, or `UNAUTHENTICATED`.
    pub fn principal(&self) -> Result<&Principal, ApiError> {
        match self {
            Authentication::Authenticated(p) => Ok(p),
            Authentication::Anonymous => {
                Err(ApiError::Unauthenticated("Authentication required: send `Authorization: Bearer <token>`.".into()))
            }
            Authentication::Refused(reason) => Err(ApiError::Unauthenticated(reason.clone())),
        }
    }

    /// The admin who may manage keys, or `UNAUTHENTICATED` / `FORBIDDEN`.
    pub fn key_manager(&self) -> Result<&User, ApiError> {
        match self.principal()? {
            Principal::Admin { user, cloud, .. } if policy::may_manage_keys(user.role, *cloud) => Ok(user),
            Principal::Admin { .. } => Err(ApiError::Forbidden(
                "Only internal admins acting in the employee cloud may manage API keys.".into(),
            )),
            Principal::Integration { .. } => {
                Err(ApiError::Forbidden("API keys cannot be used to manage API keys; sign in as an admin.".into()))
            }
        }
    }
}

/// Authenticates the value of an `Authorization` header.
///
/// Only failures of our own (database down) are errors; bad credentials give
/// [`Authentication::Refused`].
pub async fn authenticate(
    state: &ApiState,
    authorization: Option<&str>,
    client: Option<IpAddr>,
) -> Result<Authentication, ServiceError> {
    let Some(header) = authorization else {
        return Ok(Authentication::Anonymous);
    };
    let Some(token) = bearer_token(header) else {
        return Ok(Authentication::Refused("The Authorization header must be `Bearer <token>`.".into()));
    };
    if token.starts_with(latchkey_domain::secret::KEY_PREFIX) {
        return authenticate_key(state, token, client).await;
    }
    let claims = match state.token_key.verify(token, state.clock.now()) {
        Ok(c) => c,
        Err(e) => return Ok(Authentication::Refused(token_refusal(e).into())),
    };
    let Some(tenant) = state.store.tenant(claims.tid).await? else {
        return Ok(Authentication::Refused("The token's tenant does not exist.".into()));
    };
    let Some(user) = state.store.user(claims.tid, claims.sub).await? else {
        return Ok(Authentication::Refused("The token's user does not exist in its tenant.".into()));
    };
    Ok(Authentication::Authenticated(Principal::Admin { user, tenant, cloud: claims.cloud }))
}

async fn authenticate_key(
    state: &ApiState,
    presented: &str,
    client: Option<IpAddr>,
) -> Result<Authentication, ServiceError> {
    let refused = || Ok(Authentication::Refused("The API key is not valid.".into()));
    let verified = match state.verifier.verify(presented, client).await? {
        VerifyOutcome::Valid(v) => v,
        VerifyOutcome::RateLimited => {
            return Ok(Authentication::Refused("Too many failed attempts with this key; retry later.".into()));
        }
        VerifyOutcome::Malformed | VerifyOutcome::Invalid => return refused(),
    };
    let (Some(key), Some(tenant)) =
        (state.store.key(verified.tenant_id, verified.key_id).await?, state.store.tenant(verified.tenant_id).await?)
    else {
        return refused();
    };
    Ok(Authentication::Authenticated(Principal::Integration { key, tenant }))
}

/// The token of a `Bearer` header (scheme case-insensitive).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn token_refusal(e: TokenError) -> &'static str {
    match e {
        TokenError::Expired => "The token has expired; request a new one.",
        TokenError::Malformed | TokenError::Algorithm | TokenError::Signature | TokenError::NotYetValid => {
            "The token is not valid."
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
