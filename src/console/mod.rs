//! The operator console: server-rendered pages under `/`, served by the same binary as
//! the API (see docs/console.md).
//!
//! Every page is HTML rendered from the store with [`minijinja`] templates embedded in
//! the binary, with one embedded stylesheet and one embedded script: nothing is
//! fetched from another origin, and the Content-Security-Policy says so. The script
//! follows `GET /api/v1/events` and re-renders a page's live regions when something
//! happens; approvals, rejections and freezes go through the API itself, so the
//! console can do nothing the API would refuse the same person.
//!
//! Who is looking: the person an authenticating proxy names (`[auth.proxy]`), or the
//! holder of a token typed into the sign-in page, kept in a session cookie (HttpOnly,
//! SameSite=Strict, gone when the browser closes). A person without a role sees the
//! sign-in page; a viewer sees no control that changes anything.

mod pages;
mod render;
mod session;
pub mod timeline;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::app::AppState;
use crate::domain::Access;
use crate::http::auth::Principal;
use crate::http::error::ApiError;

pub use session::{SESSION_COOKIE, token as session_token};

/// No origin but this server's, no inline script or style, never in a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The console's routes, behind its own sign-in check, with its security headers.
pub fn router(state: &AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(pages::now))
        .route("/decisions", get(pages::decisions))
        .route("/decisions/{id}", get(pages::decision))
        .route("/target", get(pages::target))
        .route("/alerts", get(pages::alerts))
        .route("/actions", get(pages::actions))
        .route("/freezes", get(pages::freezes))
        .route_layer(middleware::from_fn_with_state(state.clone(), signed_in));
    let open = Router::new()
        .route("/sign-in", get(session::sign_in_page))
        .route("/session", post(session::sign_in).delete(session::sign_out))
        .route("/assets/console.css", get(render::stylesheet))
        .route("/assets/console.js", get(render::script));
    pages
        .merge(open)
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// Pages need a reader: a person without one is sent to sign in (and back).
async fn signed_in(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let principal = match state.auth.identify(peer, req.headers()) {
        Ok(principal) => principal,
        Err(refused) => return render::error_page(&refused).into_response(),
    };
    let Some(principal) = principal else {
        let back = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        let to = format!(
            "/sign-in?next={}",
            form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
        );
        return Redirect::to(&to).into_response();
    };
    if !principal.role.allows(Access::Read) {
        return render::error_page(&ApiError::forbidden(principal.role.as_str())).into_response();
    }
    tracing::Span::current().record("principal", principal.name.as_str());
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// What every page's frame shows about who is looking.
#[derive(serde::Serialize)]
struct Viewer {
    name: String,
    role: &'static str,
    /// May approve, reject, declare and lift freezes: the page shows those controls.
    can_write: bool,
    /// Signed in with a token through the sign-in page (and so may sign out).
    session: bool,
}

impl Viewer {
    fn of(principal: &Principal, headers: &axum::http::HeaderMap) -> Self {
        Self {
            name: principal.name.clone(),
            role: principal.role.as_str(),
            can_write: principal.role.allows(Access::Write),
            session: session::has_cookie(headers),
        }
    }
}

/// A page that could not be shown, as a page.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        render::error_page(&self.0).into_response()
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(err: crate::store::StoreError) -> Self {
        Self(ApiError::from(err))
    }
}

fn not_found(what: String) -> PageError {
    PageError(ApiError::new(StatusCode::NOT_FOUND, "not_found", what))
}
