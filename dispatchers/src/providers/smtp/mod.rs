//! Email over SMTP with `lettre`'s client on Herald's own session pool (`pool`):
//! STARTTLS / implicit TLS / plain per configuration, text and HTML as
//! multipart/alternative, and a Message-ID derived from the notification id and target so a
//! resend is recognisable as the same message.

use self::pool::{SmtpPool, SmtpPoolSetupError, SmtpSendError};
use crate::providers::Unsubscribe;
use crate::providers::email::{message_id, unsubscribe_headers};
use crate::providers::{DeliveryError, Provider, SendFuture, Sent};
use herald_schemas::ChannelMessage;
use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;

mod config;
pub mod pool;

pub use config::{EmailConfig, SmtpConfig, SmtpTls};

#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    #[error("invalid default sender {value:?}: {reason}")]
    DefaultFrom { value: String, reason: String },
    #[error(transparent)]
    Relay(#[from] SmtpPoolSetupError),
    #[error(transparent)]
    Secret(#[from] herald_runtime::config::SecretError),
}

#[derive(Clone)]
pub struct SmtpProvider {
    pool: SmtpPool,
    default_from: Mailbox,
    message_id_domain: String,
    unsubscribe: Unsubscribe,
}

impl std::fmt::Debug for SmtpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpProvider")
            .field("default_from", &self.default_from)
            .finish_non_exhaustive()
    }
}

impl SmtpProvider {
    pub fn new(config: &EmailConfig) -> Result<Self, EmailSetupError> {
        herald_schemas::install_tls_provider();
        let smtp = &config.smtp;
        let credentials = match &smtp.username {
            Some(user) => {
                let password =
                    smtp.password.as_ref().map(|p| p.read()).transpose()?.unwrap_or_default();
                Some(Credentials::new(user.clone(), password))
            }
            None => None,
        };
        let pool = SmtpPool::new(smtp, credentials)?;
        let default_from =
            config.default_from.parse::<Mailbox>().map_err(|e| EmailSetupError::DefaultFrom {
                value: config.default_from.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            pool,
            default_from,
            message_id_domain: config.message_id_domain.clone(),
            unsubscribe: config.unsubscribe.clone(),
        })
    }

    /// Builds the MIME message; failures are about the record, so they are permanent.
    fn build(&self, message: &ChannelMessage) -> Result<Message, DeliveryError> {
        let Some(content) = &message.email else {
            return Err(DeliveryError::Invalid {
                reason: "channel message has no email content".into(),
            });
        };
        let to = message.target.parse::<Mailbox>().map_err(|e| DeliveryError::Permanent {
            reason: format!("invalid recipient address: {e}"),
        })?;
        let from = match message.from.as_ref().and_then(|f| f.email.as_deref()) {
            Some(address) => {
                let name = message.from.as_ref().and_then(|f| f.name.clone());
                let address = address.parse().map_err(|e| DeliveryError::Permanent {
                    reason: format!("invalid sender address: {e}"),
                })?;
                Mailbox::new(name, address)
            }
            None => self.default_from.clone(),
        };
        let mut builder = Message::builder()
            .from(from)
            .to(to)
            .subject(content.subject.clone())
            .message_id(Some(self.message_id(message)));
        for (name, value) in unsubscribe_headers(message, &self.unsubscribe) {
            builder =
                builder.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(name), value));
        }
        let built = match (&content.text, &content.html) {
            (Some(text), Some(html)) => {
                builder.multipart(MultiPart::alternative_plain_html(text.clone(), html.clone()))
            }
            (None, Some(html)) => builder.singlepart(SinglePart::html(html.clone())),
            (text, None) => {
                builder.header(ContentType::TEXT_PLAIN).body(text.clone().unwrap_or_default())
            }
        };
        built.map_err(|e| DeliveryError::Permanent {
            reason: format!("cannot build the email: {e}"),
        })
    }

    fn message_id(&self, message: &ChannelMessage) -> String {
        message_id(message, &self.message_id_domain)
    }
}

/// SMTP reply codes that blame our account or configuration, not the recipient: retrying
/// (after the operator fixed it) is right, failing the notification is not.
const ACCOUNT_PROBLEMS: [&str; 3] = ["530", "534", "535"];

fn classify(e: &SmtpSendError) -> DeliveryError {
    let reason = e.to_string();
    let SmtpSendError::Smtp { source, .. } = e else {
        // Connecting, TLS and a relay that stopped answering: the relay's trouble, not the
        // message's.
        return DeliveryError::Transient { reason, retry_after: None };
    };
    if source.is_permanent() {
        let code = source.status().map(|c| c.to_string()).unwrap_or_default();
        if ACCOUNT_PROBLEMS.contains(&code.as_str()) {
            return DeliveryError::Transient { reason, retry_after: None };
        }
        return DeliveryError::Permanent { reason };
    }
    DeliveryError::Transient { reason, retry_after: None }
}

impl Provider for SmtpProvider {
    fn send<'a>(&'a self, message: &'a ChannelMessage) -> SendFuture<'a> {
        Box::pin(async move {
            let email = self.build(message)?;
            match self.pool.send(email.envelope(), &email.formatted()).await {
                Ok(response) => {
                    Ok(Sent { provider_message_id: response.message().next().map(str::to_owned) })
                }
                Err(e) => Err(classify(&e)),
            }
        })
    }
}

#[cfg(test)]
mod tests;
