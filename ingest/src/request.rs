//! The JSON body of `POST /v1/notifications` and its validation into one
//! `NotificationRequest` per recipient.

use std::collections::BTreeMap;

use herald_schemas::{
    EmailContent, NotificationRequest, PushContent, Recipient, Sender, SmsContent,
};
use serde::{Deserialize, Serialize};

/// The send request. The seed's body is valid as is:
/// `{"to":[{"user_id":123456}],"from":{"email":"..."},"subject":"...","content":[{"type":"text/plain","value":"..."}]}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    pub to: Vec<RecipientBody>,
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub from: Option<SenderBody>,
    /// Email subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// Email body parts, `text/plain` and/or `text/html`.
    #[serde(default)]
    pub content: Vec<ContentBody>,
    #[serde(default)]
    pub sms: Option<SmsBody>,
    #[serde(default)]
    pub push: Option<PushBody>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// RFC 3339 time to send at; absent or past: now.
    #[serde(default)]
    pub send_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientBody {
    #[serde(default)]
    pub user_id: Option<UserId>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

/// User ids arrive as numbers (the seed's `123456`) or strings; both mean the same user.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum UserId {
    Number(u64),
    Text(String),
}

impl UserId {
    fn into_string(self) -> String {
        match self {
            UserId::Number(n) => n.to_string(),
            UserId::Text(s) => s,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderBody {
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsBody {
    pub text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushBody {
    #[serde(default)]
    pub title: Option<String>,
    pub body: String,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// One failed rule: where and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_recipients: usize,
    /// How far ahead `send_at` may be.
    pub max_schedule_ms: i64,
}

const MAX_USER_ID: usize = 128;
const MAX_SUBJECT: usize = 998;
const MAX_SMS_TEXT: usize = 1_600;
const MAX_METADATA_ENTRIES: usize = 32;

struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError { field: field.into(), reason: reason.into() });
    }

    fn email(&mut self, field: &str, value: &str) {
        if let Err(e) = value.parse::<email_address::EmailAddress>() {
            self.fail(field, format!("not a valid email address: {e}"));
        }
    }

    fn phone(&mut self, field: &str, value: &str) {
        if !is_e164(value) {
            self.fail(
                field,
                "not an E.164 phone number (+ then 8 to 15 digits, e.g. +14155550100)",
            );
        }
    }
}

/// `+`, a non-zero country code digit, 8 to 15 digits in all (ITU-T E.164).
pub fn is_e164(value: &str) -> bool {
    let Some(digits) = value.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Milliseconds since the epoch of an RFC 3339 time (`Z` or an offset).
fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok().or_else(|| {
        // humantime reads UTC only: apply an explicit offset ourselves.
        let (base, sign, offset) =
            text.rfind('+').map(|i| (&text[..i], 1, &text[i + 1..])).or_else(|| {
                text.rfind('-').filter(|i| *i > 10).map(|i| (&text[..i], -1, &text[i + 1..]))
            })?;
        let (h, m) = offset.split_once(':')?;
        let shift = (h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?) * 60;
        let utc = humantime::parse_rfc3339_weak(base).ok()?;
        let secs = i64::try_from(utc.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()?;
        let shifted = u64::try_from(secs - sign * shift).ok()?;
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(shifted))
    })?;
    i64::try_from(time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()
}

fn is_category(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Validates `body` and builds one request per recipient, all sharing `notification_id`.
pub fn validate(
    body: SendBody,
    limits: Limits,
    notification_id: &str,
    client_id: &str,
) -> Result<Vec<NotificationRequest>, Vec<FieldError>> {
    let mut check = Checker { errors: Vec::new() };
    if body.to.is_empty() {
        check.fail("to", "at least one recipient is required");
    }
    if body.to.len() > limits.max_recipients {
        check.fail("to", format!("at most {} recipients per request", limits.max_recipients));
    }
    let mut recipients = Vec::with_capacity(body.to.len());
    for (i, r) in body.to.into_iter().enumerate() {
        let field = format!("to[{i}]");
        let user_id = r.user_id.map(UserId::into_string);
        match (&user_id, &r.email, &r.phone) {
            (None, None, None) => check.fail(&field, "needs a user_id, an email or a phone"),
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                check.fail(&field, "a user_id recipient takes its addresses from the directory; give user_id or addresses, not both")
            }
            _ => {}
        }
        if let Some(id) = &user_id
            && (id.is_empty() || id.len() > MAX_USER_ID || id.chars().any(char::is_control))
        {
            check.fail(
                format!("{field}.user_id"),
                format!("must be 1 to {MAX_USER_ID} printable characters"),
            );
        }
        if let Some(email) = &r.email {
            check.email(&format!("{field}.email"), email);
        }
        if let Some(phone) = &r.phone {
            check.phone(&format!("{field}.phone"), phone);
        }
        recipients.push(Recipient { user_id, email: r.email, phone: r.phone });
    }

    let from = body.from.map(|f| {
        if let Some(email) = &f.email {
            check.email("from.email", email);
        }
        Sender { email: f.email, name: f.name }
    });

    let mut text = None;
    let mut html = None;
    for (i, part) in body.content.into_iter().enumerate() {
        let field = format!("content[{i}]");
        if part.value.is_empty() {
            check.fail(format!("{field}.value"), "must not be empty");
        }
        let slot = match part.kind.as_str() {
            "text/plain" => &mut text,
            "text/html" => &mut html,
            other => {
                check.fail(
                    format!("{field}.type"),
                    format!("unsupported content type {other:?}: use text/plain or text/html"),
                );
                continue;
            }
        };
        if slot.replace(part.value).is_some() {
            check.fail(format!("{field}.type"), format!("{} given twice", part.kind));
        }
    }
    let email = match (body.subject, text.is_some() || html.is_some()) {
        (Some(subject), true) => {
            if subject.trim().is_empty()
                || subject.len() > MAX_SUBJECT
                || subject.contains(['\r', '\n'])
            {
                check.fail("subject", format!("must be 1 to {MAX_SUBJECT} characters on one line"));
            }
            Some(EmailContent { subject, text, html })
        }
        (Some(_), false) => {
            check.fail("content", "an email needs at least one text/plain or text/html part");
            None
        }
        (None, true) => {
            check.fail("subject", "an email needs a subject");
            None
        }
        (None, false) => None,
    };
    let sms = body.sms.map(|s| {
        if s.text.is_empty() || s.text.chars().count() > MAX_SMS_TEXT {
            check.fail("sms.text", format!("must be 1 to {MAX_SMS_TEXT} characters"));
        }
        SmsContent { text: s.text }
    });
    let push = body.push.map(|p| {
        if p.body.is_empty() {
            check.fail("push.body", "must not be empty");
        }
        PushContent { title: p.title, body: p.body, data: p.data }
    });

    for (i, channel) in body.channels.iter().enumerate() {
        let has_content = match channel.as_str() {
            "email" => email.is_some(),
            "sms" => sms.is_some(),
            "push" => push.is_some(),
            other => {
                check.fail(
                    format!("channels[{i}]"),
                    format!("unknown channel {other:?}: use email, sms or push"),
                );
                continue;
            }
        };
        if !has_content {
            check.fail(
                format!("channels[{i}]"),
                format!("{channel} requested but the request has no {channel} content"),
            );
        }
    }
    if email.is_none() && sms.is_none() && push.is_none() && check.errors.is_empty() {
        check.fail(
            "content",
            "nothing to send: give email (subject + content), sms or push content",
        );
    }
    let category = body.category.unwrap_or_else(|| "transactional".into());
    if !is_category(&category) {
        check.fail("category", "must be 1 to 64 of a-z, 0-9, _ and -");
    }
    if body.metadata.len() > MAX_METADATA_ENTRIES {
        check.fail("metadata", format!("at most {MAX_METADATA_ENTRIES} entries"));
    }
    let now = herald_schemas::now_millis();
    let send_at = body.send_at.as_deref().and_then(|text| {
        let Some(at) = parse_rfc3339_ms(text) else {
            check.fail("send_at", "must be an RFC 3339 time, e.g. 2026-11-25T18:00:00Z");
            return None;
        };
        if at - now > limits.max_schedule_ms {
            let days = limits.max_schedule_ms / 86_400_000;
            check.fail("send_at", format!("at most {days} days ahead"));
        }
        (at > now).then_some(at)
    });
    if !check.errors.is_empty() {
        return Err(check.errors);
    }

    let accepted_at = herald_schemas::now_millis();
    Ok(recipients
        .into_iter()
        .map(|recipient| NotificationRequest {
            notification_id: notification_id.to_owned(),
            accepted_at,
            client_id: Some(client_id.to_owned()),
            recipient,
            channels: body.channels.clone(),
            category: category.clone(),
            from: from.clone(),
            email: email.clone(),
            sms: sms.clone(),
            push: push.clone(),
            metadata: body.metadata.clone(),
            send_at,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_recipients: 3, max_schedule_ms: 30 * 86_400_000 };

    #[test]
    fn send_at_is_rfc3339_within_the_limit_and_past_means_now() {
        assert_eq!(parse_rfc3339_ms("2026-01-01T00:00:00Z"), Some(1_767_225_600_000));
        assert_eq!(parse_rfc3339_ms("2026-01-01T09:00:00+09:00"), Some(1_767_225_600_000));
        assert_eq!(parse_rfc3339_ms("2025-12-31T19:00:00-05:00"), Some(1_767_225_600_000));
        assert_eq!(parse_rfc3339_ms("tomorrow"), None);
    }

    fn parse(json: &str) -> SendBody {
        serde_json::from_str(json).unwrap()
    }

    fn errors(json: &str) -> Vec<FieldError> {
        validate(parse(json), LIMITS, "n", "c").unwrap_err()
    }

    fn fields(json: &str) -> Vec<String> {
        errors(json).into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn the_seed_body_is_valid() {
        let seed = r#"{"to":[{"user_id":123456}],"from":{"email":"noreply@example.com"},"subject":"Hello","content":[{"type":"text/plain","value":"Hi there"}]}"#;
        let requests = validate(parse(seed), LIMITS, "n-1", "client").unwrap();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(r.recipient.user_id.as_deref(), Some("123456"));
        assert_eq!(r.email.as_ref().unwrap().text.as_deref(), Some("Hi there"));
        assert_eq!(r.category, "transactional");
        assert_eq!(r.client_id.as_deref(), Some("client"));
    }

    #[test]
    fn one_request_per_recipient_with_one_notification_id() {
        let body = r#"{"to":[{"user_id":"a"},{"email":"b@example.com"},{"phone":"+14155550100"}],"sms":{"text":"hi"}}"#;
        let requests = validate(parse(body), LIMITS, "n-9", "c").unwrap();
        assert_eq!(requests.len(), 3);
        assert!(requests.iter().all(|r| r.notification_id == "n-9"));
    }

    #[test]
    fn addresses_are_checked_with_the_failing_field() {
        let e = errors(
            r#"{"to":[{"email":"not-an-address"},{"phone":"0123"}],"subject":"s","content":[{"type":"text/plain","value":"v"}]}"#,
        );
        let f: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(f, vec!["to[0].email", "to[1].phone"]);
        assert!(e[1].reason.contains("E.164"));
    }

    #[test]
    fn content_rules() {
        assert_eq!(
            fields(r#"{"to":[{"user_id":1}],"content":[{"type":"text/plain","value":"v"}]}"#),
            vec!["subject"]
        );
        assert_eq!(
            fields(
                r#"{"to":[{"user_id":1}],"subject":"s","content":[{"type":"image/png","value":"v"}]}"#
            ),
            vec!["content[0].type", "content"]
        );
        assert_eq!(fields(r#"{"to":[{"user_id":1}]}"#), vec!["content"]);
        assert_eq!(
            fields(r#"{"to":[{"user_id":1}],"sms":{"text":"x"},"channels":["email","fax"]}"#),
            vec!["channels[0]", "channels[1]"]
        );
    }

    #[test]
    fn recipient_rules() {
        let sms = r#""sms":{"text":"x"}"#;
        assert_eq!(fields(&format!(r#"{{"to":[],{sms}}}"#)), vec!["to"]);
        assert_eq!(fields(&format!(r#"{{"to":[{{}}],{sms}}}"#)), vec!["to[0]"]);
        assert_eq!(
            fields(&format!(r#"{{"to":[{{"user_id":1,"email":"a@b.co"}}],{sms}}}"#)),
            vec!["to[0]"]
        );
        assert_eq!(
            fields(&format!(
                r#"{{"to":[{{"user_id":1}},{{"user_id":2}},{{"user_id":3}},{{"user_id":4}}],{sms}}}"#
            )),
            vec!["to"]
        );
    }

    #[test]
    fn e164() {
        assert!(is_e164("+14155550100"));
        assert!(is_e164("+821012345678"));
        assert!(!is_e164("14155550100"));
        assert!(!is_e164("+0155550100"));
        assert!(!is_e164("+1415555010a"));
        assert!(!is_e164("+1234567"));
    }
}
