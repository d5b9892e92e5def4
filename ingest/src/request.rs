//! The JSON body of `POST /v1/notifications` and its validation into one
//! `NotificationRequest` per recipient.

use std::collections::BTreeMap;

use herald_schemas::targets::{device_token_error, email_error, phone_number_error};
use herald_schemas::{
    DeviceTarget, EmailContent, NotificationRequest, Priority, PushContent, Recipient, Sender,
    SmsContent, TemplateRef,
};
use serde::Deserialize;

/// The send request. The seed's body is valid as is:
/// `{"to":[{"user_id":123456}],"from":{"email":"..."},"subject":"...","content":[{"type":"text/plain","value":"..."}]}`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    #[schema(min_items = 1)]
    pub to: Vec<RecipientBody>,
    /// Only these channels (`email`, `sms`, `push`); absent: every channel the content fills.
    #[serde(default)]
    #[schema(inline, value_type = Vec<RequestedChannel>)]
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
    /// `high` or `normal`; absent: high for security and transactional, normal otherwise.
    #[serde(default)]
    #[schema(inline, value_type = Option<PriorityName>)]
    pub priority: Option<String>,
    /// Seconds after `send_at` (or acceptance) after which the notification is not worth
    /// delivering any more.
    #[serde(default, deserialize_with = "optional_whole_number")]
    #[schema(minimum = 1, maximum = 2_419_200)]
    pub ttl: Option<u64>,
    /// A newer notification with the same key replaces an undelivered older one.
    #[serde(default)]
    pub collapse_key: Option<String>,
    /// A stored template to render instead of inline content.
    #[serde(default)]
    pub template_id: Option<String>,
    /// The template's locale; absent: each user's own.
    #[serde(default)]
    pub locale: Option<String>,
    /// Template variables: strings, numbers or booleans.
    #[serde(default)]
    pub data: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientBody {
    #[serde(default)]
    pub user_id: Option<UserId>,
    #[serde(default)]
    #[schema(format = Email)]
    pub email: Option<String>,
    /// E.164, and a number the country's numbering plan assigns.
    #[serde(default)]
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    pub phone: Option<String>,
    #[serde(default)]
    pub device: Option<DeviceBody>,
}

/// A device Herald's directory does not hold, by its raw push token.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceBody {
    #[schema(inline, value_type = DevicePlatform)]
    pub platform: String,
    /// iOS: the APNs token in hex (64 to 200 digits); Android: the FCM, JPush or Pushy token.
    #[schema(pattern = "^[A-Za-z0-9_:.-]{8,4096}$")]
    pub token: String,
    #[serde(default)]
    pub app_id: Option<String>,
}

/// User ids arrive as numbers (the seed's `123456`) or strings; both mean the same user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum UserId {
    Number(#[serde(deserialize_with = "whole_number")] u64),
    Text(String),
}

/// What `channels` may name (documentation only: validation names the unknown one).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum RequestedChannel {
    Email,
    Sms,
    Push,
}

/// What a device's `platform` may be (documentation only: validation names a wrong one).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum DevicePlatform {
    Ios,
    Android,
}

/// What `priority` may be (documentation only: validation names a wrong one).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum PriorityName {
    High,
    Normal,
}

/// A user id number. JSON Schema's `integer` is any number without a fraction, so
/// `24073.0` is the user `24073` (JavaScript and Python clients write such numbers);
/// beyond 2^53 a float no longer names one integer and is refused.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole(&serde_json::Number::deserialize(d)?)
        .ok_or_else(|| serde::de::Error::custom("expected a whole number from 0"))
}

fn optional_whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?
        .map(|n| {
            whole(&n).ok_or_else(|| serde::de::Error::custom("expected a whole number from 0"))
        })
        .transpose()
}

fn whole(n: &serde_json::Number) -> Option<u64> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if let Some(whole) = n.as_u64() {
        return Some(whole);
    }
    let f = n.as_f64()?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (f.fract() == 0.0 && (0.0..=EXACT).contains(&f)).then_some(f as u64)
}

impl UserId {
    fn into_string(self) -> String {
        match self {
            UserId::Number(n) => n.to_string(),
            UserId::Text(s) => s,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SenderBody {
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsBody {
    pub text: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushBody {
    #[serde(default)]
    pub title: Option<String>,
    pub body: String,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

pub use herald_runtime::http::FieldError;

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
/// FCM's and APNs' longest time to keep an undelivered message: 28 days.
const MAX_TTL_SECS: u64 = 28 * 86_400;
/// apns-collapse-id's limit.
const MAX_COLLAPSE_KEY: usize = 64;
const MAX_TEMPLATE_DATA_ENTRIES: usize = 64;
const MAX_TEMPLATE_VALUE: usize = 4_096;

struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError { field: field.into(), reason: reason.into() });
    }

    fn email(&mut self, field: &str, value: &str) {
        if let Some(reason) = email_error(value) {
            self.fail(field, reason);
        }
    }

    fn phone(&mut self, field: &str, value: &str) {
        if let Some(reason) = phone_number_error(value) {
            self.fail(field, reason);
        }
    }
}

fn is_identifier(value: &str, max: usize) -> bool {
    (1..=max).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A BCP 47 tag as the enricher's fallback reads it: `ko`, `ko-KR`, `zh-Hant-TW`.
fn is_locale(value: &str) -> bool {
    (2..=35).contains(&value.len())
        && value.split('-').all(|part| {
            (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
        })
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
        let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
        if !(0..24).contains(&h) || !(0..60).contains(&m) {
            return None;
        }
        let shift = (h * 60 + m) * 60;
        let utc = humantime::parse_rfc3339_weak(base).ok()?;
        let secs = i64::try_from(utc.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()?;
        let shifted = u64::try_from(secs.checked_sub(sign * shift)?).ok()?;
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(shifted))
    })?;
    i64::try_from(time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()
}

/// Template variables as the enricher reads them: text, whatever JSON scalar the caller sent.
fn template_data(
    check: &mut Checker,
    data: BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, String> {
    if data.len() > MAX_TEMPLATE_DATA_ENTRIES {
        check.fail("data", format!("at most {MAX_TEMPLATE_DATA_ENTRIES} variables"));
    }
    data.into_iter()
        .filter_map(|(name, value)| {
            let field = format!("data.{name}");
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    check.fail(field, "must be a string, number or boolean");
                    return None;
                }
            };
            if text.len() > MAX_TEMPLATE_VALUE {
                check.fail(field, format!("at most {MAX_TEMPLATE_VALUE} bytes"));
            }
            Some((name, text))
        })
        .collect()
}

fn is_category(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Validates `body` and builds one request per recipient, all sharing `notification_id`.
pub fn validate(
    mut body: SendBody,
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
            (None, None, None) if r.device.is_none() => {
                check.fail(&field, "needs a user_id, an email, a phone or a device")
            }
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
        let device = r.device.map(|d| {
            if let Some(reason) = device_token_error(&d.platform, &d.token) {
                let at = if reason.starts_with("unknown platform") { "platform" } else { "token" };
                check.fail(format!("{field}.device.{at}"), reason);
            }
            if d.app_id.as_deref().is_some_and(|a| !is_identifier(a, 255)) {
                check.fail(format!("{field}.device.app_id"), "must be a bundle id or package name");
            }
            DeviceTarget { platform: d.platform, token: d.token, app_id: d.app_id }
        });
        if device.is_some() && (user_id.is_some() || r.email.is_some() || r.phone.is_some()) {
            check.fail(&field, "a device recipient is the device alone; give it its own entry");
        }
        recipients.push(Recipient { user_id, email: r.email, phone: r.phone, device });
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

    let template = body.template_id.map(|id| {
        if !is_identifier(&id, 128) {
            check.fail("template_id", "must be 1 to 128 of A-Z a-z 0-9 - _ . :");
        }
        if email.is_some() || sms.is_some() || push.is_some() {
            check.fail("template_id", "give a template or inline content, not both");
        }
        let data = template_data(&mut check, std::mem::take(&mut body.data));
        TemplateRef { id, locale: body.locale.take(), data }
    });
    if template.is_none() {
        if !body.data.is_empty() {
            check.fail("data", "template variables need a template_id");
        }
        if body.locale.is_some() {
            check.fail("locale", "a locale selects a template's translation: give a template_id");
        }
    }
    if let Some(locale) = template.as_ref().and_then(|t| t.locale.as_deref())
        && !is_locale(locale)
    {
        check.fail("locale", "must be a BCP 47 tag such as ko or ko-KR");
    }
    for (i, channel) in body.channels.iter().enumerate() {
        let has_content = template.is_some()
            || match channel.as_str() {
                "email" => email.is_some(),
                "sms" => sms.is_some(),
                "push" => push.is_some(),
                _ => true,
            };
        if !herald_schemas::RequestedChannel::is_name(channel) {
            check.fail(
                format!("channels[{i}]"),
                format!("unknown channel {channel:?}: use email, sms or push"),
            );
        } else if !has_content {
            check.fail(
                format!("channels[{i}]"),
                format!("{channel} requested but the request has no {channel} content"),
            );
        }
    }
    if email.is_none()
        && sms.is_none()
        && push.is_none()
        && template.is_none()
        && check.errors.is_empty()
    {
        check.fail(
            "content",
            "nothing to send: give email (subject + content), sms or push content, or a template_id",
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
    if let Some(p) = &body.priority
        && Priority::parse(p).is_none()
    {
        check.fail("priority", "must be high or normal");
    }
    if body.ttl.is_some_and(|t| t == 0 || t > MAX_TTL_SECS) {
        check.fail("ttl", format!("must be 1 to {MAX_TTL_SECS} seconds (28 days)"));
    }
    if let Some(key) = &body.collapse_key
        && (key.is_empty() || key.len() > MAX_COLLAPSE_KEY || key.chars().any(char::is_control))
    {
        check.fail("collapse_key", format!("must be 1 to {MAX_COLLAPSE_KEY} bytes of text"));
    }
    if !check.errors.is_empty() {
        return Err(check.errors);
    }

    let accepted_at = herald_schemas::now_millis();
    let expires_at = body.ttl.and_then(|ttl| {
        let ttl_ms = i64::try_from(ttl).ok()?.checked_mul(1_000)?;
        send_at.unwrap_or(accepted_at).checked_add(ttl_ms)
    });
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
            priority: body.priority.clone(),
            expires_at,
            collapse_key: body.collapse_key.clone(),
            template: template.clone(),
        })
        .collect())
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
