//! The command executor's argv templates, rendered in [`crate::domain::render::argv`];
//! kept here for `config`'s import until it uses the domain path.

pub use crate::domain::render::argv::{check_argv, render_argv};
