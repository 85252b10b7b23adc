//! Rendering for each audience, each in one place, with escaping by construction:
//! [`argv`] (what executors run), [`shell`] (commands people paste), [`mrkdwn`] and
//! [`blocks`] (Slack), [`pagerduty`] (Events API v2), [`markdown`] (the incident
//! report). Values reach an audience only through these functions; the grammar of
//! each value is in [`super::field`].

pub mod argv;
pub mod blocks;
pub mod markdown;
pub mod mrkdwn;
pub mod pagerduty;
pub mod shell;
pub mod templates;
