//! The OpenAPI 3.1 document (`GET /openapi.json`, viewer at `/docs`), generated from the
//! code that serves the routes.
//!
//! Every route is registered with `utoipa_axum`'s `routes!` from a handler annotated with
//! `#[utoipa::path]`, so the router and the document are built from the same list: a
//! route cannot be served without being documented. The group a route is merged into
//! (see [`super::router`]) adds what the group decides, to the route and to its
//! document alike: the bearer requirement with the roles that may call it, 401 and 403,
//! 429 where the group is rate-limited, and 500/503, which any route may answer.
//!
//! # Adding a route
//!
//! 1. Write the handler in its resource's file (`src/http/actions.rs`, say) and annotate
//!    it:
//!    ```text
//!    #[utoipa::path(get, path = "/api/v1/actions", tag = "actions",
//!        params(ActionFilters),                       // an IntoParams struct of the query
//!        responses(
//!            (status = 200, description = "One page, newest first", body = Page<ActionRecord>),
//!            (status = 400, description = "A query parameter is unknown or malformed",
//!             body = ErrorBody),
//!        ))]
//!    async fn list_actions(...) -> Result<Json<Page<ActionRecord>>, ApiError> { ... }
//!    ```
//!    Document only what the handler itself answers: success, 400, 404, 413. Bodies are
//!    `#[derive(Serialize, ToSchema)]` types (never `serde_json::Value` built with
//!    `json!`), so that the schema is the type that is serialised. Request bodies are
//!    `request_body = WirePayload` with `ToSchema` on the wire type.
//! 2. Register it in the resource's router with `routes!`, never with `.route(..)`
//!    (a unit test greps for that): `OpenApiRouter::new().routes(routes!(list_actions))`.
//!    Handlers of the same path and group may share one `routes!(a, b)`.
//! 3. Merge that router into its group in [`super::api`]: `Access::Ingest` (webhooks),
//!    `Access::Read` or `Access::Write`; or into the public routes. Do not add security,
//!    401/403/429/5xx to the annotation: the group adds them.
//! 4. Add a row to `routes()` in `tests/it/auth.rs`, with the path as the document
//!    writes it and who may call it, e.g.
//!    `route(Method::GET, "/api/v1/actions", Who::Readers)`, or
//!    `with(Method::POST, "/api/v1/decisions/{id}/approve", BODY, Who::Operators)`.
//!    `{id}` is filled in with 1 (decision 1 and freeze 1 exist when the rows run).
//!    The table test checks no token, a wrong token, each too-weak role and each
//!    allowed one; a second test fails while the table and the document disagree, in
//!    routes or in roles.

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Components, ContentBuilder, HeaderBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr,
    Tag,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::domain::{Access, Role};
use crate::wire::Bounds;

/// The name of the bearer security scheme.
pub const BEARER: &str = "bearer";

const DESCRIPTION: &str = "\
rollwarden decides, with evidence, whether a bad deploy must be rolled back.

**Auth.** Send `Authorization: Bearer <token>`. Each token has a role: `webhook` \
(ingest routes only), `viewer` (reads only), `operator` and `admin` (everything). The \
roles that may call an operation are listed in its security requirement. A missing or \
wrong token gets 401, a token whose role may not call the route 403.

**Errors.** Every error has one shape: `{\"error\": {\"code\", \"message\", \"details\"}}`; \
`details.field` names the offending input of a client error.

**Lists** return `{\"items\": [...], \"next\": \"<cursor>\" | null}`, newest first. Pass \
`next` back as `after` for the following page; `limit` is 1 to 1000 (default 100). An \
unknown or malformed query parameter gets a 400 naming it.

**Times** are RFC 3339 (`2026-08-22T14:03:00Z`), in UTC in responses.

**Text** in a request may not contain NUL (`\\u0000`), which neither store can keep: a \
body with one anywhere gets 400.

**400 or 422.** A request that breaks what the schemas state gets 400. A few rules \
cannot be stated in a schema, because they relate two fields (an end before its start) \
or a field and the server's clock (an expiry in the past); an operation that has them \
lists them, and breaking one gets 422 with the code `inconsistent`.

**Rate limits.** The ingest and write routes are rate-limited per token (per client \
address without auth): over the limit, 429 with `Retry-After` (seconds).";

/// The document's skeleton: info, tags, the bearer scheme and the shared responses.
pub fn base() -> OpenApi {
    let mut components = Components::new();
    components.security_schemes.insert(
        BEARER.into(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A token from `[[auth.tokens]]` in the configuration; its role decides \
                     which routes it may call.",
                ))
                .build(),
        )
        .into(),
    );
    for (name, response) in shared_responses() {
        components.responses.insert(name.into(), response.into());
    }
    let tag = |name: &str, description: &str| {
        let mut tag = Tag::new(name);
        tag.description = Some(description.into());
        tag
    };
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("rollwarden")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .build(),
        )
        .components(Some(components))
        .tags(Some([
            tag("ingest", "What senders post: alerts, deploys, signals"),
            tag("alerts", "Alerts as received"),
            tag("deploys", "Deploy history from every source"),
            tag("decisions", "What rollwarden decided, why, and why not"),
            tag("freezes", "Deployment freezes"),
            tag(
                "releases",
                "One version across regions: its regions, scope and wave gate",
            ),
            tag(
                "actions",
                "What came of decisions: rollbacks, approvals, freezes, notifications",
            ),
            tag("canary", "Flagger webhooks and the Argo Rollouts analysis"),
            tag(
                "events",
                "What rollwarden and its operators do, live (Server-Sent Events)",
            ),
            tag("operations", "Health, metrics and this document"),
        ]))
        .build()
}

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    )
}

fn integer_header(description: &str) -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        ))
        .description(Some(description))
        .build()
}

/// Responses that whole groups of routes share, by component name.
fn shared_responses() -> Vec<(&'static str, Response)> {
    vec![
        (
            "Unauthorized",
            error_response("No valid bearer token (`unauthorized`)")
                .header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .description(Some("`Bearer`"))
                        .build(),
                )
                .build(),
        ),
        (
            "Forbidden",
            error_response(
                "The token's role may not call this route (`forbidden`), or a browser sent \
                 this write from another origin (`cross_origin`)",
            )
            .build(),
        ),
        (
            "TooManyRequests",
            error_response("This caller is over the group's rate limit (`rate_limited`)")
                .header(
                    "Retry-After",
                    integer_header("Seconds until a request will be admitted again"),
                )
                .build(),
        ),
        (
            "UnsupportedMediaType",
            error_response(
                "The body is not declared as JSON: send `Content-Type: application/json` \
                 (`unsupported_media_type`)",
            )
            .build(),
        ),
        (
            "Internal",
            error_response("A fault of ours, logged with its cause (`internal`)").build(),
        ),
        (
            "Unavailable",
            error_response(
                "Transient: the store is unreachable, the request timed out, or the server \
                 is shutting down (`unavailable`); retry later",
            )
            .build(),
        ),
    ]
}

fn shared(name: &str) -> RefOr<Response> {
    RefOr::Ref(Ref::from_response_name(name))
}

/// Every operation of `doc`, mutably.
fn operations(doc: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .filter_map(Option::as_mut)
    })
}

/// The roles that may do `access`, weakest first.
pub fn roles(access: Access) -> Vec<&'static str> {
    Role::ALL
        .into_iter()
        .filter(|role| role.allows(access))
        .map(Role::as_str)
        .collect()
}

/// Documents what a route group adds to each of its routes: the bearer requirement with
/// the roles allowed, 401 and 403, and 429 when the group is rate-limited.
pub fn gate(doc: &mut OpenApi, access: Access, rate_limited: bool) {
    let roles = roles(access);
    let note = format!("Roles: {}.", roles.join(", "));
    for op in operations(doc) {
        op.security = Some(vec![SecurityRequirement::new(BEARER, roles.clone())]);
        op.description = Some(match op.description.take() {
            Some(text) => format!("{text}\n\n{note}"),
            None => note.clone(),
        });
        let responses = &mut op.responses.responses;
        responses.insert("401".into(), shared("Unauthorized"));
        responses.insert("403".into(), shared("Forbidden"));
        if rate_limited {
            responses.insert("429".into(), shared("TooManyRequests"));
        }
    }
}

/// Completes the document: every route may answer 500 (a panic) and 503 (a timeout),
/// and one that takes a body 415.
pub fn finish(doc: &mut OpenApi) {
    let signed: Vec<String> = super::guard::SIGNED_PATHS
        .iter()
        .filter_map(|p| doc.paths.paths.get(*p))
        .filter_map(|item| item.post.as_ref())
        .filter_map(|op| op.operation_id.clone())
        .collect();
    for op in operations(doc) {
        let is_signed = op
            .operation_id
            .as_ref()
            .is_some_and(|id| signed.contains(id));
        if op.request_body.is_some() && !is_signed {
            // src/http/guard.rs: a body must be declared as JSON.
            op.responses
                .responses
                .entry("415".into())
                .or_insert(shared("UnsupportedMediaType"));
        }
        let responses = &mut op.responses.responses;
        responses.entry("500".into()).or_insert(shared("Internal"));
        responses
            .entry("503".into())
            .or_insert(shared("Unavailable"));
    }
}

/// The shape of an RFC 3339 timestamp as the parser (chrono's) reads it, stated beside
/// `format: date-time`, which JSON Schema 2020-12 only annotates.
const DATE_TIME_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}\
    (\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$";

/// Gives every `format: date-time` string its [`DATE_TIME_PATTERN`].
pub fn state_date_times(doc: &mut Value) {
    match doc {
        Value::Object(object) => {
            if object.get("format").and_then(Value::as_str) == Some("date-time") {
                object.insert("pattern".into(), DATE_TIME_PATTERN.into());
            }
            object.values_mut().for_each(state_date_times);
        }
        Value::Array(items) => items.iter_mut().for_each(state_date_times),
        _ => {}
    }
}

/// States this instance's `[limits]` where the payloads they bound are described, so
/// that the document says what the parsers enforce. (Their schemas come from the wire
/// types, which know no configuration.) Name and value bounds are in bytes; the
/// schemas' `maxLength` counts characters, the same for the ASCII that label names and
/// values mostly are.
pub fn state_limits(doc: &mut Value, bounds: &Bounds) {
    let map = |entries: usize, value_bytes: usize| {
        json!({
            "maxProperties": entries,
            "propertyNames": {
                "type": "string",
                "minLength": 1,
                "maxLength": bounds.max_label_name_bytes,
            },
            "additionalProperties": {"type": "string", "maxLength": value_bytes},
        })
    };
    let schemas = "/components/schemas";
    let alert = format!("{schemas}/AlertmanagerAlert/properties");
    let mut labels = map(bounds.max_labels, bounds.max_label_value_bytes);
    labels["minProperties"] = 1.into();
    merge(doc, &format!("{alert}/labels"), labels);
    let annotations = map(bounds.max_annotations, bounds.max_annotation_value_bytes);
    merge(doc, &format!("{alert}/annotations"), annotations);
    let url = json!({"maxLength": bounds.max_annotation_value_bytes});
    merge(doc, &format!("{alert}/generatorURL"), url);
    let alerts = json!({"maxItems": bounds.max_alerts});
    merge(
        doc,
        &format!("{schemas}/AlertmanagerPayload/properties/alerts"),
        alerts,
    );
    // Flagger's metadata: bounded like annotations; environment and region are kept.
    let mut metadata = map(bounds.max_annotations, bounds.max_annotation_value_bytes);
    let kept = json!({
        "type": "string",
        "maxLength": bounds.max_annotation_value_bytes.min(1024),
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
    });
    metadata["properties"] = json!({"environment": kept, "region": kept});
    merge(
        doc,
        &format!("{schemas}/FlaggerPayload/properties/metadata"),
        metadata,
    );
}

/// Adds `fields` to the object at `pointer`, which the wire types' schemas must have.
fn merge(doc: &mut Value, pointer: &str, fields: Value) {
    let target = doc
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("the OpenAPI document has no {pointer}"));
    if let Value::Object(fields) = fields {
        target.extend(fields);
    }
}

/// `GET /openapi.json`, public.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_document))
}

/// The document, serialised once when the router is built.
#[derive(Clone)]
pub struct Document(pub Arc<str>);

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        content_type = "application/json", body = Object)))]
async fn openapi_document(Extension(document): Extension<Document>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.0.to_string(),
    )
}
