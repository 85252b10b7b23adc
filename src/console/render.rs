//! Templates, assets and the HTML error page. The templates are compiled into the
//! binary and parsed once; names end in `.html`, so minijinja escapes every value
//! (autoescape) unless it is marked safe here, in Rust.

use std::sync::LazyLock;

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value};
use pulldown_cmark::{Event, Options, Parser};

use crate::http::error::ApiError;

const TEMPLATES: [(&str, &str); 11] = [
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("now.html", include_str!("templates/now.html")),
    ("decision.html", include_str!("templates/decision.html")),
    ("decisions.html", include_str!("templates/decisions.html")),
    ("target.html", include_str!("templates/target.html")),
    ("alerts.html", include_str!("templates/alerts.html")),
    ("actions.html", include_str!("templates/actions.html")),
    ("freezes.html", include_str!("templates/freezes.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("error.html", include_str!("templates/error.html")),
];

const STYLESHEET: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");

static TEMPLATE_ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .unwrap_or_else(|err| panic!("console template {name}: {err}"));
    }
    env.add_filter("ts", timestamp);
    env
});

/// `2026-12-03T08:01:02.123456Z` → `2026-12-03 08:01:02Z`: what people read.
fn timestamp(value: Value) -> String {
    let text = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string);
    match chrono::DateTime::parse_from_rfc3339(&text) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%SZ")
            .to_string(),
        Err(_) => text,
    }
}

/// A page from its template and context; a template error (a bug) is a 500 page.
pub fn page(name: &str, context: Value) -> Response {
    let rendered = TEMPLATE_ENV
        .get_template(name)
        .and_then(|template| template.render(context));
    match rendered {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(template = name, error = %err, "a console template failed");
            error_page(&ApiError::internal()).into_response()
        }
    }
}

/// An error as a page with the API's status, code and message.
pub fn error_page(err: &ApiError) -> Response {
    let context = minijinja::context! {
        status => err.status.as_u16(),
        code => err.code,
        message => err.message.clone(),
    };
    let html = TEMPLATE_ENV
        .get_template("error.html")
        .and_then(|template| template.render(context))
        .unwrap_or_else(|_| "rollwarden: an error page failed to render".to_string());
    (err.status, Html(html)).into_response()
}

/// Markdown (the incident report, which quotes alert summaries and deploy messages
/// from the network) as HTML. Raw HTML in it is shown as text, never passed through.
pub fn markdown(text: &str) -> Value {
    let events = Parser::new_ext(text, Options::ENABLE_TABLES).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    // Links keep only http(s) destinations: a `javascript:` one would run on a click
    // (the CSP refuses it too).
    Value::from_safe_string(strip_unsafe_links(&html))
}

/// `href="javascript:…"` (and any scheme but http, https, mailto, or a relative link)
/// loses its destination.
fn strip_unsafe_links(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find("href=\"") {
        let (before, after) = rest.split_at(at + "href=\"".len());
        out.push_str(before);
        let end = after.find('"').unwrap_or(after.len());
        let link = &after[..end];
        let lower = link.to_ascii_lowercase();
        let scheme_free = !lower.contains(':');
        if scheme_free
            || lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("mailto:")
        {
            out.push_str(link);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

pub async fn stylesheet() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLESHEET)
}

pub async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            // Embedded in the binary: new with every build, so revalidated, never stale.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            TEMPLATE_ENV.get_template(name).unwrap();
        }
    }

    #[test]
    fn markdown_from_the_network_cannot_carry_markup_or_script_links() {
        let html = markdown(
            "# Incident\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(1)> \
             [click](javascript:alert(1)) [ok](https://example.com/run/1) [rel](/decisions/2)",
        )
        .to_string();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.to_ascii_lowercase().contains("javascript:"), "{html}");
        assert!(
            html.contains("href=\"https://example.com/run/1\""),
            "{html}"
        );
        assert!(html.contains("href=\"/decisions/2\""), "{html}");
        assert!(html.contains("<h1>Incident</h1>"), "{html}");
    }

    #[test]
    fn timestamps_read_as_utc_seconds() {
        assert_eq!(
            timestamp(Value::from("2026-12-03T08:01:02.123456+00:00")),
            "2026-12-03 08:01:02Z"
        );
        assert_eq!(timestamp(Value::from("not a time")), "not a time");
    }
}
