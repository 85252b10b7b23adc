//! Rendering for each audience, each in one place, with escaping by construction:
//! [`argv`] (what executors run), [`shell`] (commands people paste), [`mrkdwn`]
//! (Slack). The grammar of each value is in [`super::field`].

pub mod argv;
pub mod mrkdwn;
pub mod shell;
