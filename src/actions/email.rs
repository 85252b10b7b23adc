//! The stakeholder email, through SMTP with lettre: STARTTLS (required, never
//! optional), TLS from the first byte, or a plain connection to a relay on this host.
//! The message (recipients, subject, body) is rendered when it is enqueued; this only
//! sends it. SMTP's 4xx answers and connection failures are retried by the outbox,
//! its 5xx answers are not.

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;

use super::executor::Posted;
use crate::config::{EmailConfig, SmtpTls};

/// The notification channel of the stakeholder email.
pub const CHANNEL: &str = "email";

/// An SMTP relay and who the email is from.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    pub config: EmailConfig,
}

impl Mailer {
    pub fn from_config(
        config: &EmailConfig,
        timeout: std::time::Duration,
    ) -> Result<Option<Self>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        let host = config.smtp_host.as_str();
        let builder = match config.tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                host,
            )),
        }
        .map_err(|err| format!("notify.email: {err}"))?;
        let mut builder = builder.port(config.smtp_port).timeout(Some(timeout));
        if !config.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                config.username.clone(),
                config.password.expose().to_string(),
            ));
        }
        let from = config
            .from
            .parse()
            .map_err(|err| format!("notify.email.from: {err}"))?;
        Ok(Some(Self {
            transport: builder.build(),
            from,
            config: config.clone(),
        }))
    }

    /// Sends a rendered email: `{"to": [...], "subject": ..., "body": ...}`.
    pub(crate) async fn deliver(&self, payload: &Value) -> Posted {
        let mut message = lettre::Message::builder()
            .from(self.from.clone())
            .subject(payload["subject"].as_str().unwrap_or("rollwarden"))
            .header(ContentType::TEXT_PLAIN);
        let recipients = payload["to"].as_array().cloned().unwrap_or_default();
        if recipients.is_empty() {
            return Posted::Rejected("the email has no recipients".into());
        }
        for to in recipients {
            match to.as_str().map(str::parse::<Mailbox>) {
                Some(Ok(mailbox)) => message = message.to(mailbox),
                _ => return Posted::Rejected(format!("not an email address: {to}")),
            }
        }
        let body = payload["body"].as_str().unwrap_or("").to_string();
        let message = match message.body(body) {
            Ok(message) => message,
            Err(err) => return Posted::Rejected(format!("the email cannot be built: {err}")),
        };
        match self.transport.send(message).await {
            Ok(response) => Posted::Ok {
                status: response.code().into(),
                body: response.message().collect::<Vec<_>>().join(" "),
            },
            Err(err) if err.is_permanent() => Posted::Rejected(format!("SMTP refused it: {err}")),
            Err(err) => Posted::Transient(format!("SMTP: {err}")),
        }
    }
}
