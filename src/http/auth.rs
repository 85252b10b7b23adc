//! Bearer-token authentication and role checks.
//!
//! Tokens are compared as SHA-256 digests in constant time, against every configured
//! token without stopping early, so neither timing nor the answer says which tokens
//! exist. Tokens never reach a log: only the holder's configured name does.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::Secret;
use crate::domain::{Access, Role};

/// Who made a request, for handlers and audit records.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

pub struct Authenticator {
    tokens: Vec<([u8; 32], Principal)>,
}

impl Authenticator {
    pub fn new(tokens: Vec<(String, Role, Secret)>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(name, role, secret)| (digest(secret.expose()), Principal { name, role }))
                .collect(),
        }
    }

    /// True when no token is configured: every request is the anonymous admin.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            role: Role::Admin,
        }
    }

    fn authenticate(&self, authorization: Option<&[u8]>) -> Option<Principal> {
        if self.is_open() {
            return Some(Self::anonymous());
        }
        self.authenticate_token(authorization?.strip_prefix(b"Bearer ")?)
    }

    /// The principal holding `token` (the bare token, as a sender that cannot set
    /// headers puts it in its payload).
    pub fn authenticate_token(&self, token: &[u8]) -> Option<Principal> {
        if self.is_open() {
            return Some(Self::anonymous());
        }
        let presented = digest_bytes(token);
        let mut found = None;
        for (candidate, principal) in &self.tokens {
            if bool::from(candidate.ct_eq(&presented)) {
                found = Some(principal.clone());
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    digest_bytes(token.as_bytes())
}

fn digest_bytes(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Route-layer state: who checks, and what the route needs.
#[derive(Clone)]
pub struct Gate {
    pub auth: Arc<Authenticator>,
    pub access: Access,
}

/// Middleware: 401 without a valid token, 403 when its role may not do `access`.
pub async fn require(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let principal = gate.auth.authenticate(header);
    admit(&gate, principal, req, next).await
}

/// Runs the request as `principal`: 401 without one, 403 when its role may not do the
/// gate's access.
pub async fn admit(
    gate: &Gate,
    principal: Option<Principal>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(principal) = principal else {
        return ApiError::unauthorized().into_response();
    };
    if !principal.role.allows(gate.access) {
        return ApiError::forbidden(principal.role.as_str()).into_response();
    }
    tracing::Span::current().record("principal", principal.name.as_str());
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(vec![
            (
                "am".into(),
                Role::Webhook,
                Secret::new("webhook-token-0123456789"),
            ),
            (
                "grafana".into(),
                Role::Viewer,
                Secret::new("viewer-token-0123456789"),
            ),
        ])
    }

    #[test]
    fn the_right_token_finds_its_principal() {
        let p = auth()
            .authenticate(Some(b"Bearer viewer-token-0123456789"))
            .unwrap();
        assert_eq!((p.name.as_str(), p.role), ("grafana", Role::Viewer));
    }

    #[test]
    fn wrong_missing_or_malformed_tokens_find_nobody() {
        let a = auth();
        for header in [
            None,
            Some(&b"Bearer nope"[..]),
            Some(b"bearer viewer-token-0123456789"),
            Some(b"Basic dmlld2VyOg=="),
            Some(b"Bearer viewer-token-012345678"),
        ] {
            assert!(a.authenticate(header).is_none(), "{header:?}");
        }
    }

    #[test]
    fn no_tokens_means_anonymous_admin() {
        let p = Authenticator::new(vec![]).authenticate(None).unwrap();
        assert_eq!(p.role, Role::Admin);
    }
}
