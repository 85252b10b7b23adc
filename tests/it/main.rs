//! The integration tests: one binary, the real app on random ports, real stores.

#[path = "../support/mod.rs"]
mod support;

mod actions;
mod api;
mod argo;
mod argocd;
mod auth;
mod browser;
mod canary;
mod chatops;
mod cli;
mod clusters;
mod console;
mod ctl;
mod deploys;
mod engine;
mod events;
mod executors;
mod fake_kube;
mod freezes;
mod fuzz;
mod hardening;
mod hostile;
mod ingest;
mod limits;
mod openapi;
mod outbox;
mod proxy;
mod rbac;
mod releases;
mod replay;
mod shutdown;
mod store;
mod undo;
mod watchers;
