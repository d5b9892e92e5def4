//! What every email provider derives the same way: the stable Message-ID, and the
//! `List-Unsubscribe` headers of categories a user may leave.

use std::fmt::Write;

use herald_schemas::ChannelMessage;
use sha2::{Digest, Sha256};

use serde::{Deserialize, Serialize};

/// `<notification id>.<target hash>@domain`: the same for every attempt of one delivery, so
/// a resend after a crash is recognisable as the same message.
pub fn message_id(message: &ChannelMessage, domain: &str) -> String {
    let target = Sha256::digest(message.target.as_bytes());
    let target = hex::encode(&target[..8]);
    format!("<{}.{target}@{domain}>", message.notification_id)
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `List-Unsubscribe` and, when a URL is configured, `List-Unsubscribe-Post` (one click),
/// for messages of the configured categories.
pub fn unsubscribe_headers(
    message: &ChannelMessage,
    unsubscribe: &Unsubscribe,
) -> Vec<(&'static str, String)> {
    if !unsubscribe.categories.contains(&message.category) {
        return Vec::new();
    }
    let mut targets = Vec::new();
    if let Some(url) = &unsubscribe.url {
        let url = url
            .replace("{user_id}", &encode(message.user_id.as_deref().unwrap_or_default()))
            .replace("{notification_id}", &encode(&message.notification_id))
            .replace("{category}", &encode(&message.category))
            .replace("{address}", &encode(&message.target));
        targets.push(format!("<{url}>"));
    }
    if let Some(mailto) = &unsubscribe.mailto {
        let address = mailto.trim_start_matches("mailto:");
        targets.push(format!("<mailto:{address}?subject=unsubscribe>"));
    }
    let mut headers = Vec::new();
    if !targets.is_empty() {
        headers.push(("List-Unsubscribe", targets.join(", ")));
    }
    if unsubscribe.url.is_some() {
        headers.push(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".to_owned()));
    }
    headers
}

/// `List-Unsubscribe` (RFC 2369) with one-click unsubscribe (RFC 8058) on the categories a
/// user may leave, as mailbox providers require of bulk senders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Unsubscribe {
    /// HTTPS URL; `{user_id}`, `{notification_id}`, `{category}` and `{address}` are
    /// replaced (URL-encoded). It must accept a POST for one-click unsubscribes.
    pub url: Option<String>,
    /// `mailto:` address for clients without one-click support.
    pub mailto: Option<String>,
    pub categories: Vec<String>,
}

impl Default for Unsubscribe {
    fn default() -> Self {
        Self { url: None, mailto: None, categories: vec!["marketing".into()] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marketing_mail_gets_one_click_unsubscribe_with_encoded_values() {
        let mut message =
            crate::providers::tests_support::push_message("n-1", "ada+news@example.com");
        message.category = "marketing".into();
        message.user_id = Some("user 7".into());
        let unsubscribe = Unsubscribe {
            url: Some(
                "https://prefs.example.com/u?user={user_id}&c={category}&to={address}".into(),
            ),
            mailto: Some("unsubscribe@example.com".into()),
            categories: vec!["marketing".into()],
        };
        let headers = unsubscribe_headers(&message, &unsubscribe);
        assert_eq!(
            headers,
            vec![
                (
                    "List-Unsubscribe",
                    "<https://prefs.example.com/u?user=user%207&c=marketing&to=ada%2Bnews%40example.com>, <mailto:unsubscribe@example.com?subject=unsubscribe>".to_owned()
                ),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".to_owned()),
            ]
        );
        message.category = "security".into();
        assert!(unsubscribe_headers(&message, &unsubscribe).is_empty(), "no opt-out from security");
    }
}
