//! The pure core: types and rules with no I/O, no async and no framework imports.
//!
//! Everything else in the crate adapts the world (HTTP, databases, Kubernetes) to these
//! types; nothing here knows those adapters exist.

pub mod alert;
pub mod deploy;
pub mod freeze;
pub mod role;
pub mod signal;
pub mod target;

pub use alert::{Alert, AlertStatus, Labels, Notification, Source};
pub use deploy::{Deploy, DeployRecord, DeploySource, TargetRef};
pub use freeze::Freeze;
pub use role::{Access, Role};
pub use signal::{Scope, Signal, SignalKind, SignalSource};
pub use target::{Mode, Target};
