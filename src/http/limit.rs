//! Rate limits per caller for the ingest and write route groups (`[limits]`
//! `ingest_per_second`, `ingest_burst`, `write_per_second`, `write_burst`).
//!
//! Callers are told apart by the token's configured name, so a misbehaving sender
//! exhausts its own budget and nobody else's; without auth, by the client's address.
//! The buckets are governor's GCRA: `burst` requests at once, refilled at `per_second`.
//! Over the limit: 429 with `Retry-After` and our JSON error, counted in
//! `rollwarden_http_requests_throttled_total{group, principal}`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::auth::{Authenticator, Principal};
use super::error::ApiError;
use crate::telemetry::Metrics;

/// How often (in checks) idle callers' buckets are dropped: only anonymous callers,
/// keyed by address, can make their number grow.
const PRUNE_EVERY: u64 = 4096;

/// One route group's limiter.
pub struct RateLimit {
    /// `ingest` or `write`: the metric's `group` label.
    group: &'static str,
    limiter: DefaultKeyedRateLimiter<String>,
    auth: Arc<Authenticator>,
    metrics: Arc<Metrics>,
    checks: AtomicU64,
}

impl RateLimit {
    /// A limiter admitting `burst` requests at once and `per_second` after that, per
    /// caller; `None` (no limit) when `per_second` is 0.
    pub fn new(
        group: &'static str,
        per_second: u32,
        burst: u32,
        auth: Arc<Authenticator>,
        metrics: Arc<Metrics>,
    ) -> Option<Arc<Self>> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Some(Arc::new(Self {
            group,
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            auth,
            metrics,
            checks: AtomicU64::new(0),
        }))
    }

    /// `Err(seconds to wait)` when `key` is over its limit.
    fn check(&self, key: String) -> Result<(), u64> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Whole seconds, rounded up: a client that waits that long is admitted.
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }
}

/// Route-layer middleware; runs after [`super::auth::require`], which has put the
/// caller's [`Principal`] in the request.
pub async fn throttle(State(limit): State<Arc<RateLimit>>, req: Request, next: Next) -> Response {
    let (key, principal) = if limit.auth.is_open() {
        let address = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
        (format!("address:{address}"), "anonymous".to_string())
    } else {
        let name = req
            .extensions()
            .get::<Principal>()
            .map_or_else(|| "unknown".to_string(), |p| p.name.clone());
        (format!("token:{name}"), name)
    };
    match limit.check(key) {
        Ok(()) => next.run(req).await,
        Err(retry_after) => {
            limit.metrics.throttled(limit.group, principal);
            // Counted, and logged only at debug: a runaway sender must not flood the log.
            tracing::debug!(group = limit.group, retry_after, "rate limited");
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "over the {} rate limit for this caller; retry in {retry_after} s",
                    limit.group
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            response
        }
    }
}
