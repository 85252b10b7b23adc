//! rollwarden: decides, with evidence, whether a bad deploy must be rolled back, and then
//! does it or asks a person to.
//!
//! Data flows one way: [`http`] and [`k8s`] → [`wire`] → [`domain`] types → [`ingest`] →
//! [`store`] → [`engine`] (`decide()`) → [`store`] → [`actions`]. Nothing in [`domain`]
//! knows the others exist. `CONTRIBUTING.md` has the layout and the one place a route, a
//! rule, an executor or a store method goes; `docs/` is the manual.
//!
//! - [`actions`]: decisions into actions, exactly once: the outbox, its workers, the
//!   executors and the notifications.
//! - [`app`]: building, serving and shutting down the service, around one `AppState`.
//! - [`clock`]: time as a dependency: the system clock, or a manual one in tests.
//! - [`console`]: the operator console: server-rendered pages under `/`, live from the
//!   event stream, acting through the API.
//! - [`config`]: layered configuration (defaults, file, `ROLLWARDEN__` variables) and
//!   its validation.
//! - [`domain`]: the pure core: types, classification, the policy, `decide()`; no I/O.
//! - [`engine`]: the decision loop: a target is evaluated after each ingest that touches
//!   it and on a tick.
//! - [`http`]: the HTTP API: router, auth, rate limits, errors, the OpenAPI document,
//!   one module per resource or webhook.
//! - [`ingest`]: where every source is recorded: Alertmanager notifications (group
//!   commit), CI deploys, Flagger calls and signals.
//! - [`k8s`]: Kubernetes: deploy history from rollouts and Helm releases, and the
//!   rollout undo.
//! - [`replay`]: shadow mode: replay a recorded stream through a policy; export one.
//! - [`store`]: durable state behind the `Store` trait: one SQL store for PostgreSQL and
//!   SQLite.
//! - [`telemetry`]: logs (text or JSON) and the Prometheus metrics registry.
//! - [`wire`]: the external payload formats, parsed strictly into domain types.

pub mod actions;
pub mod app;
pub mod clock;
pub mod config;
pub mod console;
pub mod ctl;
pub mod domain;
pub mod engine;
pub mod events;
pub mod http;
pub mod ingest;
pub mod k8s;
pub mod replay;
pub mod store;
pub mod telemetry;
pub mod wire;
