//! Who may do what: the roles a bearer token carries and the access each route needs.

use serde::{Deserialize, Serialize};

/// The role of a configured bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Senders: Alertmanager, canary controllers, CI pipelines. May only post.
    Webhook,
    /// Dashboards and people reading history. May only read.
    Viewer,
    /// On-call: reads, posts, approves, freezes.
    Operator,
    /// Everything.
    Admin,
}

/// The kind of access a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Posting to a webhook or ingest path.
    Ingest,
    /// Reading history.
    Read,
    /// Changing state by hand: approvals, freezes.
    Write,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Webhook, Role::Viewer, Role::Operator, Role::Admin];

    /// Whether a token with this role may perform `access`.
    ///
    /// `webhook` and `viewer` are deliberately disjoint: a sender's token cannot read
    /// history and a dashboard's token cannot inject alerts.
    pub fn allows(self, access: Access) -> bool {
        match self {
            Role::Admin | Role::Operator => true,
            Role::Viewer => access == Access::Read,
            Role::Webhook => access == Access::Ingest,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Webhook => "webhook",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_allows_exactly_its_access() {
        let table = [
            (Role::Webhook, [true, false, false]),
            (Role::Viewer, [false, true, false]),
            (Role::Operator, [true, true, true]),
            (Role::Admin, [true, true, true]),
        ];
        for (role, expected) in table {
            let got = [Access::Ingest, Access::Read, Access::Write].map(|a| role.allows(a));
            assert_eq!(got, expected, "{role:?}");
        }
    }
}
