//! Signing in without a proxy: a person types a token into the sign-in page; the
//! server checks it and keeps it in a session cookie (HttpOnly: no script reads it;
//! SameSite=Strict: no other site's page sends it; no expiry: gone when the browser
//! closes; Secure unless the request came over plain HTTP to a loopback host, as with
//! `kubectl port-forward`). Bearer-token API clients never see it.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::render;
use crate::app::AppState;
use crate::http::error::ApiError;

/// The cookie holding a signed-in person's token (hex: any byte is safe in it).
pub const SESSION_COOKIE: &str = "rollwarden_session";

/// The longest token accepted (the configured ones are far shorter).
const MAX_TOKEN: usize = 512;

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Where to go after signing in: a path on this server, never another site.
fn local_path(next: Option<&str>) -> String {
    next.filter(|n| {
        n.starts_with('/')
            && !n.starts_with("//")
            && !n.contains('\\')
            && n.len() <= 2048
            && !n.chars().any(char::is_control)
    })
    .unwrap_or("/")
    .to_string()
}

pub async fn sign_in_page(State(state): State<AppState>, Query(q): Query<Next>) -> Response {
    render::page(
        "sign_in.html",
        minijinja::context! {
            next => local_path(q.next.as_deref()),
            open => state.auth.is_open(),
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    token: String,
}

/// `POST /session` `{"token": …}`: 204 with the session cookie, or 401. Reached only
/// through the browser-writes guard, so only from this server's own pages (or a
/// client that is no browser).
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<SignIn>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(SignIn { token })) = body else {
        return ApiError::bad_request("invalid_field", "token", "send {\"token\": \"…\"}")
            .into_response();
    };
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN {
        return ApiError::unauthorized().into_response();
    }
    let Some(principal) = state.auth.authenticate_token(token.as_bytes()) else {
        return ApiError::unauthorized().into_response();
    };
    tracing::info!(principal = %principal.name, "signed in to the console");
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
        hex::encode(token),
        secure(&headers)
    );
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// `DELETE /session`: forgets the cookie.
pub async fn sign_out(headers: HeaderMap) -> Response {
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure(&headers)
    );
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// `; Secure`, but for a console reached on a loopback host over plain HTTP.
fn secure(headers: &HeaderMap) -> &'static str {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    if !https && matches!(name, "localhost" | "127.0.0.1" | "[::1]") {
        ""
    } else {
        "; Secure"
    }
}

/// The session cookie's token, when the request carries one.
pub fn token(headers: &HeaderMap) -> Option<Vec<u8>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .and_then(|(_, value)| hex::decode(value).ok())
        .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN)
}

pub fn has_cookie(headers: &HeaderMap) -> bool {
    token(headers).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        for (next, to) in [
            (Some("/decisions/4?x=1"), "/decisions/4?x=1"),
            (None, "/"),
            (Some("https://evil.example/"), "/"),
            (Some("//evil.example/"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("/a\nb"), "/"),
            (Some("javascript:alert(1)"), "/"),
        ] {
            assert_eq!(local_path(next), to, "{next:?}");
        }
    }

    #[test]
    fn the_cookie_is_read_among_others_and_garbage_is_no_token() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; rollwarden_session=746f6b; c=d"),
        );
        assert_eq!(token(&headers).unwrap(), b"tok");
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("rollwarden_session=zz"),
        );
        assert!(token(&headers).is_none());
    }

    #[test]
    fn cookies_are_secure_except_on_plain_http_loopback() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            secure(&h)
        };
        assert_eq!(with(&[("host", "127.0.0.1:8080")]), "");
        assert_eq!(with(&[("host", "localhost")]), "");
        assert_eq!(
            with(&[("host", "localhost:80"), ("x-forwarded-proto", "https")]),
            "; Secure"
        );
        assert_eq!(with(&[("host", "rollwarden.example.com")]), "; Secure");
        assert_eq!(with(&[]), "; Secure");
    }
}
