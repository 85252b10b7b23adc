//! What a browser must not be able to do on an operator's behalf. With no tokens
//! configured every loopback caller is admin, and a web page the operator has open can
//! make the browser POST to `127.0.0.1:8080`: a "simple" cross-origin request (a
//! `text/plain` form post) needs no preflight and would create a freeze or approve a
//! rollback. So every request that can change something
//! - is refused (403 `cross_origin`) when the browser says it comes from another origin
//!   (`Sec-Fetch-Site: cross-site` or `same-site`, or an `Origin` that is not this
//!   server's own `Host`); machine callers (Alertmanager, Flagger, CI, curl) send
//!   neither header, and are unaffected;
//! - with a body, must declare it as JSON (`application/json` or `application/*+json`),
//!   or is refused with 415 `unsupported_media_type`: a browser cannot send that
//!   content type cross-origin without a preflight, which rollwarden never grants.
//!
//! Slack's interactions ([`SIGNED_PATHS`]) are exempt: Slack posts a form, and the
//! handler accepts only a body signed with the app's secret, which no page can forge.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Routes authenticated by a signature over the body, not by a token or a cookie.
pub const SIGNED_PATHS: [&str; 1] = ["/webhooks/slack/interactions"];

/// The middleware: reads only headers, so it runs before authentication and the body.
pub async fn browser_writes(request: Request, next: Next) -> Response {
    if changes_state(request.method())
        && !SIGNED_PATHS.contains(&request.uri().path())
        && let Err(error) = check(request.headers())
    {
        return error.into_response();
    }
    next.run(request).await
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn check(headers: &HeaderMap) -> Result<(), ApiError> {
    // A console session's cookie goes with every request the browser makes, so a write
    // it authenticates must say where it comes from (browsers send `Origin` with every
    // script's POST and DELETE), and the checks below then hold it to this server.
    if !headers.contains_key(header::AUTHORIZATION)
        && crate::console::session_token(headers).is_some()
        && header_text(headers, "sec-fetch-site").is_none()
        && header_text(headers, header::ORIGIN.as_str()).is_none()
    {
        return Err(cross_origin(
            "a console session's write must come from the console: it names no Origin",
        ));
    }
    if let Some(site) = header_text(headers, "sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(cross_origin(&format!(
            "the browser sent this request from another site (Sec-Fetch-Site: {site})"
        )));
    }
    if let Some(origin) = header_text(headers, header::ORIGIN.as_str()) {
        let host = header_text(headers, header::HOST.as_str()).unwrap_or("");
        if authority(origin) != Some(host) || host.is_empty() {
            return Err(cross_origin(
                "the request's Origin is not this server: cross-origin writes are refused",
            ));
        }
    }
    if has_body(headers) {
        let json = header_text(headers, header::CONTENT_TYPE.as_str()).is_some_and(is_json);
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "body: send it as JSON, with Content-Type: application/json",
            )
            .with_details(serde_json::json!({ "field": "Content-Type" })));
        }
    }
    Ok(())
}

fn cross_origin(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "cross_origin", message)
        .with_details(serde_json::json!({ "field": "Origin" }))
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// `https://host:port` → `host:port`; `null` and anything else without a scheme →
/// `None`, which matches no host.
fn authority(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    (matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// A body is coming: a non-zero `Content-Length`, or any `Transfer-Encoding`.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || header_text(headers, header::CONTENT_LENGTH.as_str()).is_some_and(|n| n.trim() != "0")
}

/// `application/json` or `application/<anything>+json`, any parameters (`charset`).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json") && subtype.len() > "+json".len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn code(pairs: &[(&'static str, &str)]) -> Option<u16> {
        check(&headers(pairs)).err().map(|e| e.status.as_u16())
    }

    #[test]
    fn json_bodies_pass_and_others_get_415() {
        let json = [
            ("content-length", "2"),
            ("content-type", "application/json"),
        ];
        assert_eq!(code(&json), None);
        for ok in [
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert_eq!(
                code(&[("content-length", "2"), ("content-type", ok)]),
                None,
                "{ok}"
            );
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/+json",
            "text/json",
        ] {
            assert_eq!(
                code(&[("content-length", "2"), ("content-type", bad)]),
                Some(415),
                "{bad}"
            );
        }
        assert_eq!(code(&[("content-length", "2")]), Some(415));
        assert_eq!(code(&[("transfer-encoding", "chunked")]), Some(415));
        // No body: an approval without a comment needs no content type.
        assert_eq!(code(&[("content-length", "0")]), None);
        assert_eq!(code(&[]), None);
    }

    #[test]
    fn cross_origin_browser_writes_get_403() {
        let json = ("content-type", "application/json");
        for site in ["cross-site", "same-site", "whatever"] {
            assert_eq!(code(&[("sec-fetch-site", site), json]), Some(403), "{site}");
        }
        for site in ["same-origin", "none"] {
            assert_eq!(code(&[("sec-fetch-site", site), json]), None, "{site}");
        }
        let host = ("host", "127.0.0.1:8080");
        assert_eq!(
            code(&[("origin", "http://127.0.0.1:8080"), host, json]),
            None
        );
        for origin in [
            "https://evil.example",
            "http://127.0.0.1:8081",
            "http://127.0.0.1:8080.evil.example",
            "null",
            "127.0.0.1:8080",
            "http://127.0.0.1:8080/x",
        ] {
            assert_eq!(
                code(&[("origin", origin), host, json]),
                Some(403),
                "{origin}"
            );
        }
        assert_eq!(
            code(&[("origin", "http://127.0.0.1:8080"), json]),
            Some(403)
        );
    }
}
