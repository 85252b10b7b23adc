//! rollwarden: decides, with evidence, whether a bad deploy must be rolled back.
//!
//! Data flows one way: `http` → `wire` → `domain` → `store` (→ engine → actions, in
//! later modules). See DESIGN.md for the whole picture.

/// Building, serving and shutting down the service.
/// Decisions into actions: the outbox, its workers, executors and notifications.
pub mod actions;
pub mod app;
/// Time as an injectable dependency.
pub mod clock;
/// Layered configuration and its validation.
pub mod config;
/// Pure types and rules: no I/O.
pub mod domain;
/// The decision loop: evaluations after ingests and on a tick.
pub mod engine;
/// The HTTP API: router, layers, handlers.
pub mod http;
/// Group commit of inbound notifications.
pub mod ingest;
/// Deploy history from Kubernetes rollouts and Helm releases.
pub mod k8s;
/// Shadow mode: replay a recorded stream through a policy; export one.
pub mod replay;
/// Durable state behind one trait, for PostgreSQL and SQLite.
pub mod store;
/// Logging and metrics.
pub mod telemetry;
/// External payload formats.
pub mod wire;
