//! Slack's interaction requests (PROTOCOLS.md F.1, F.2): the v0 signature over the raw
//! body, and the one thing rollwarden reads from a `block_actions` payload, a press of
//! its Approve or Reject button by a user.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::render::blocks;

/// Whether `signature` (`v0=` + hex) is Slack's HMAC-SHA256 of
/// `v0:{timestamp}:{body}` under `secret`, compared in constant time.
pub fn signed(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_digest) = signature.strip_prefix("v0=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    expected.as_slice().ct_eq(&given).into()
}

/// A press of one of rollwarden's buttons.
#[derive(Debug)]
pub struct Press {
    pub user: String,
    pub name: String,
    /// `approved` or `rejected`.
    pub to: &'static str,
    /// The button's value, when it is a decision id.
    pub decision: Option<i64>,
    pub response_url: Option<String>,
}

impl Press {
    pub fn read(payload: &Value) -> Option<Press> {
        if payload["type"] != "block_actions" {
            return None;
        }
        let action = payload["actions"].as_array()?.first()?;
        let to = match action["action_id"].as_str()? {
            blocks::APPROVE => "approved",
            blocks::REJECT => "rejected",
            _ => return None,
        };
        let user = payload["user"]["id"].as_str()?;
        let is_user_id = (2..=32).contains(&user.len())
            && user.starts_with(['U', 'W'])
            && user
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !is_user_id {
            return None;
        }
        // Shown and recorded, never trusted: one line, bounded.
        let name: String = ["name", "username"]
            .iter()
            .find_map(|k| payload["user"][k].as_str())
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        Some(Press {
            user: user.to_string(),
            name,
            to,
            decision: action["value"].as_str().and_then(|v| v.parse().ok()),
            response_url: payload["response_url"].as_str().map(String::from),
        })
    }

    /// Who pressed, as the audit trail and the console show it.
    pub fn person(&self) -> String {
        if self.name.is_empty() {
            format!("slack:{}", self.user)
        } else {
            format!("slack:{} ({})", self.user, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slacks_test_vector_verifies_and_nothing_else_does() {
        // PROTOCOLS.md F.1's vector, computed with Python's hmac and openssl.
        let secret = b"test-signing-secret-0123456789ab";
        let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
        let good = "v0=bd76c37610e2a2c254e5601210eb3c235570aecbb97f60c66e2e05b9a9cd8d98";
        assert!(signed(secret, "1767225600", body, good));
        assert!(!signed(secret, "1767225601", body, good));
        assert!(!signed(secret, "1767225600", b"payload=%7B%7D", good));
        assert!(!signed(b"another-secret", "1767225600", body, good));
        assert!(!signed(
            secret,
            "1767225600",
            body,
            &good.replace("v0=", "v1=")
        ));
        assert!(!signed(secret, "1767225600", body, &good[..40]));
        assert!(!signed(secret, "1767225600", body, "v0=not-hex"));
        assert!(!signed(secret, "1767225600", body, ""));
    }

    #[test]
    fn only_rollwarden_buttons_pressed_by_a_user_are_read() {
        let press = |action_id: &str, user: &str, value: &str| {
            Press::read(&json!({
                "type": "block_actions",
                "user": {"id": user, "username": "alice\n<!channel>", "name": "alice"},
                "actions": [{"action_id": action_id, "value": value}],
                "response_url": "https://hooks.slack.com/actions/T/1/x",
            }))
        };
        let p = press(blocks::APPROVE, "U0123ABCD", "42").unwrap();
        assert_eq!((p.to, p.decision), ("approved", Some(42)));
        assert_eq!(p.person(), "slack:U0123ABCD (alice)");
        assert_eq!(press(blocks::REJECT, "W0123", "42").unwrap().to, "rejected");
        assert_eq!(
            press(blocks::APPROVE, "U0123", "42; drop")
                .unwrap()
                .decision,
            None
        );
        assert!(press("someone_elses_button", "U0123", "42").is_none());
        assert!(press(blocks::APPROVE, "u0123", "42").is_none());
        assert!(press(blocks::APPROVE, "U01 23", "42").is_none());
        assert!(press(blocks::APPROVE, "B0123", "42").is_none());
        assert!(Press::read(&json!({"type": "view_submission"})).is_none());
    }
}
