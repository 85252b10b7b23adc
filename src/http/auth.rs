//! Authentication (bearer tokens, or a person named by an authenticating reverse
//! proxy) and role checks.
//!
//! Tokens are compared as SHA-256 digests in constant time, against every configured
//! token without stopping early, so neither timing nor the answer says which tokens
//! exist. Tokens never reach a log: only the holder's configured name does.
//!
//! With `[auth.proxy]`, a request from one of the proxy's addresses that carries its
//! identity header is that person, with the strongest role of their groups; the same
//! headers from any other address are ignored (anyone can send a header).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
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
    proxy: Option<ProxyAuth>,
}

/// `[auth.proxy]`, parsed.
pub struct ProxyAuth {
    pub trusted: Vec<ipnet::IpNet>,
    pub user_headers: Vec<HeaderName>,
    pub groups_header: HeaderName,
    pub roles: BTreeMap<String, Role>,
    pub default_role: Option<Role>,
}

/// The longest person name (an email address: RFC 5321's 254) taken from a header.
const MAX_PERSON: usize = 254;

/// What the proxy's headers say about a request.
enum Vouched {
    /// Not from the proxy, or no identity header: token auth decides.
    No,
    Person(Principal),
    /// Signed in, but in no group with a role (and no default role).
    NoRole(String),
}

impl ProxyAuth {
    fn vouch(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Vouched {
        let Some(peer) = peer else {
            return Vouched::No;
        };
        let ip = peer.ip().to_canonical();
        if !self.trusted.iter().any(|net| net.contains(&ip)) {
            return Vouched::No;
        }
        let person = self
            .user_headers
            .iter()
            .find_map(|name| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|p| {
                crate::wire::is_visible_text(p, MAX_PERSON) && !p.contains(char::is_whitespace)
            });
        let Some(person) = person else {
            return Vouched::No;
        };
        let strongest = headers
            .get_all(&self.groups_header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|group| self.roles.get(group.trim()).copied())
            .max_by_key(|role| rank(*role))
            .or(self.default_role);
        match strongest {
            Some(role) => Vouched::Person(Principal {
                name: person.to_string(),
                role,
            }),
            None => Vouched::NoRole(person.to_string()),
        }
    }
}

/// How much a role may do, for picking a person's strongest.
fn rank(role: Role) -> u8 {
    match role {
        Role::Webhook => 0,
        Role::Viewer => 1,
        Role::Operator => 2,
        Role::Admin => 3,
    }
}

impl Authenticator {
    pub fn new(tokens: Vec<(String, Role, Secret)>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(name, role, secret)| (digest(secret.expose()), Principal { name, role }))
                .collect(),
            proxy: None,
        }
    }

    /// People named by an authenticating proxy, besides the tokens.
    pub fn with_proxy(mut self, proxy: ProxyAuth) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// True when no token and no proxy is configured: every request is the anonymous
    /// admin.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.proxy.is_none()
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

    /// Who sent a request: the person the proxy vouches for (when it came from the
    /// proxy), else the bearer token's holder, else the holder of the console session's
    /// token. `Err` is the answer for a person the proxy signed in whom no role covers.
    pub fn identify(
        &self,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Result<Option<Principal>, ApiError> {
        if let Some(proxy) = &self.proxy {
            match proxy.vouch(peer, headers) {
                Vouched::Person(principal) => return Ok(Some(principal)),
                Vouched::NoRole(person) => {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        format!(
                            "{person} is in no group auth.proxy.roles gives a role, and \
                             auth.proxy.default_role is not set"
                        ),
                    ));
                }
                Vouched::No => {}
            }
        }
        if let Some(authorization) = headers.get(header::AUTHORIZATION) {
            return Ok(self.authenticate(Some(authorization.as_bytes())));
        }
        if let Some(token) = crate::console::session_token(headers) {
            return Ok(self.authenticate_token(&token));
        }
        Ok(self.authenticate(None))
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
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match gate.auth.identify(peer, req.headers()) {
        Ok(principal) => admit(&gate, principal, req, next).await,
        Err(refused) => refused.into_response(),
    }
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
