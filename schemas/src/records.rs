//! Rust forms of the Avro records. Each type is checked against its `.avsc` file by the tests
//! below (a value round-trips through the schema), so the two cannot drift apart silently.

use std::collections::BTreeMap;

use crate::topics::Channel;
use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// A record schema compiled once: its datum writer and reader, and its canonical form.
pub struct Datum {
    pub(crate) writer: GenericDatumWriter<'static>,
    pub(crate) reader: GenericDatumReader<'static>,
    pub(crate) canonical_form: String,
}

impl std::fmt::Debug for Datum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datum").finish_non_exhaustive()
    }
}

impl Datum {
    /// # Panics
    /// When `schema` names a type it does not define: the record schemas are compiled in and
    /// parsed by this crate's tests, so that is a build defect, not bad input.
    #[allow(clippy::expect_used)]
    pub fn of(schema: &'static Schema) -> Self {
        Self {
            writer: GenericDatumWriter::builder(schema).build().expect("record schema resolves"),
            reader: GenericDatumReader::builder(schema).build().expect("record schema resolves"),
            canonical_form: schema.canonical_form(),
        }
    }
}

/// A record type with its current (reader) schema.
pub trait Record: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Schema text exactly as in `schemas/avro/`; this is what producers register.
    fn schema_json() -> &'static str;
    /// Name used in errors and metrics.
    const NAME: &'static str;
    /// The parsed schema, used as the reader schema when decoding.
    fn schema() -> &'static Schema;
    /// Writer and reader of this schema's datums, built once (see [`Datum`]).
    fn datum() -> &'static Datum;
}

macro_rules! record {
    ($ty:ident, $file:literal) => {
        impl Record for $ty {
            fn schema_json() -> &'static str {
                include_str!(concat!("../avro/", $file))
            }
            const NAME: &'static str = stringify!($ty);
            fn schema() -> &'static apache_avro::Schema {
                static SCHEMA: std::sync::OnceLock<apache_avro::Schema> =
                    std::sync::OnceLock::new();
                SCHEMA.get_or_init(|| {
                    // The file is compiled in and parsed by the tests of this crate, so a
                    // failure here is a build defect, not bad input.
                    #[allow(clippy::expect_used)]
                    apache_avro::Schema::parse_str(Self::schema_json())
                        .expect(concat!($file, " is valid Avro"))
                })
            }
            fn datum() -> &'static $crate::records::Datum {
                static DATUM: std::sync::OnceLock<$crate::records::Datum> =
                    std::sync::OnceLock::new();
                DATUM.get_or_init(|| $crate::records::Datum::of(Self::schema()))
            }
        }
    };
}
pub(crate) use record;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Recipient {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    #[serde(default)]
    pub device: Option<DeviceTarget>,
}

/// A raw device token for a device the directory does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeviceTarget {
    /// `ios` or `android`.
    pub platform: String,
    pub token: String,
    pub app_id: Option<String>,
}

/// Content rendered by the enricher from a stored template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TemplateRef {
    pub id: String,
    pub locale: Option<String>,
    pub data: BTreeMap<String, String>,
}

/// `high` or `normal`: the providers' priority (APNs 10/5, FCM HIGH/NORMAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    High,
    Normal,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "high" => Some(Priority::High),
            "normal" => Some(Priority::Normal),
            _ => None,
        }
    }

    /// The explicit `priority`, else high for categories whose messages are time-critical.
    pub fn of(explicit: Option<&str>, category: &str) -> Self {
        explicit.and_then(Self::parse).unwrap_or(if is_urgent_category(category) {
            Priority::High
        } else {
            Priority::Normal
        })
    }
}

/// Whether an `expires_at` (ms) has been reached at `now_ms`; none never expires.
fn past(expires_at: Option<i64>, now_ms: i64) -> bool {
    expires_at.is_some_and(|at| at <= now_ms)
}

/// Security codes and transactional messages lose their worth when late.
pub fn is_urgent_category(category: &str) -> bool {
    matches!(category, "security" | "transactional")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Sender {
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EmailContent {
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SmsContent {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PushContent {
    pub title: Option<String>,
    pub body: String,
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NotificationRequest {
    pub notification_id: String,
    pub accepted_at: i64,
    pub client_id: Option<String>,
    pub recipient: Recipient,
    pub channels: Vec<String>,
    pub category: String,
    pub from: Option<Sender>,
    pub email: Option<EmailContent>,
    pub sms: Option<SmsContent>,
    pub push: Option<PushContent>,
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub send_at: Option<i64>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub collapse_key: Option<String>,
    #[serde(default)]
    pub template: Option<TemplateRef>,
}
record!(NotificationRequest, "notification_request.avsc");

impl NotificationRequest {
    /// The partitioning key of `herald.requests`: per-user ordering and per-user state in the
    /// enricher. Recipients without a user id are keyed by their address.
    pub fn partition_key(&self) -> &str {
        let r = &self.recipient;
        r.user_id
            .as_deref()
            .or(r.email.as_deref())
            .or(r.phone.as_deref())
            .or(r.device.as_ref().map(|d| d.token.as_str()))
            .unwrap_or(&self.notification_id)
    }

    /// True when the request can no longer be delivered in time.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        past(self.expires_at, now_ms)
    }

    /// The lane it travels in: by explicit priority, else by category.
    pub fn lane(&self) -> crate::Lane {
        crate::Lane::of(Priority::of(self.priority.as_deref(), &self.category))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChannelMessage {
    pub notification_id: String,
    pub channel: String,
    pub target: String,
    pub user_id: Option<String>,
    pub app_id: Option<String>,
    pub route: String,
    pub category: String,
    pub accepted_at: i64,
    pub from: Option<Sender>,
    pub email: Option<EmailContent>,
    pub sms: Option<SmsContent>,
    pub push: Option<PushContent>,
    pub metadata: BTreeMap<String, String>,
    pub fallback: Option<Fallback>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub collapse_key: Option<String>,
}
record!(ChannelMessage, "channel_message.avsc");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fallback {
    pub channel: String,
    pub target: String,
}

impl ChannelMessage {
    pub fn priority(&self) -> Priority {
        Priority::of(self.priority.as_deref(), &self.category)
    }

    pub fn lane(&self) -> crate::Lane {
        crate::Lane::of(self.priority())
    }

    /// True when the message can no longer be delivered in time.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        past(self.expires_at, now_ms)
    }

    /// The message a push becomes on its fallback channel: SMS text or email from the push's
    /// title and body, same notification id (so each ledger still sends it once).
    pub fn fallback_message(&self) -> Option<(Channel, ChannelMessage)> {
        let fallback = self.fallback.as_ref()?;
        let push = self.push.as_ref()?;
        let channel: Channel = fallback.channel.parse().ok()?;
        let text = match &push.title {
            Some(title) => format!("{title}: {}", push.body),
            None => push.body.clone(),
        };
        let (email, sms) = match channel {
            Channel::Sms => (None, Some(SmsContent { text })),
            Channel::Email => {
                let subject = push.title.clone().unwrap_or_else(|| push.body.clone());
                (Some(EmailContent { subject, text: Some(push.body.clone()), html: None }), None)
            }
            Channel::Ios | Channel::Android => return None,
        };
        let mut metadata = self.metadata.clone();
        metadata.insert("fallback_from".into(), self.channel.clone());
        Some((
            channel,
            ChannelMessage {
                channel: channel.as_str().to_owned(),
                target: fallback.target.clone(),
                app_id: None,
                route: "default".into(),
                email,
                sms,
                push: None,
                metadata,
                fallback: None,
                ..self.clone()
            },
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// What an older reader sees for a kind added after it was built.
    Unknown,
    Accepted,
    Scheduled,
    Skipped,
    Routed,
    Sent,
    Delivered,
    Failed,
    Retrying,
    DeadLettered,
    Opened,
    Clicked,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Accepted => "accepted",
            Self::Scheduled => "scheduled",
            Self::Skipped => "skipped",
            Self::Routed => "routed",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::DeadLettered => "dead_lettered",
            Self::Opened => "opened",
            Self::Clicked => "clicked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryEvent {
    pub event_id: String,
    pub notification_id: String,
    pub occurred_at: i64,
    pub kind: EventKind,
    pub channel: Option<String>,
    pub target: Option<String>,
    pub user_id: Option<String>,
    pub provider: Option<String>,
    pub reason: Option<String>,
    pub attempt: i32,
    pub detail: BTreeMap<String, String>,
}
record!(DeliveryEvent, "delivery_event.avsc");

impl DeliveryEvent {
    /// An event about `notification_id` happening now; the caller fills in what it knows.
    pub fn new(notification_id: &str, kind: EventKind) -> Self {
        Self {
            event_id: uuid_like_id(),
            notification_id: notification_id.to_owned(),
            occurred_at: crate::now_millis(),
            kind,
            channel: None,
            target: None,
            user_id: None,
            provider: None,
            reason: None,
            attempt: 0,
            detail: BTreeMap::new(),
        }
    }
}

/// Event ids only need to be unique, not secret: time plus a process-wide counter plus the
/// process id is unique across instances without pulling a UUID generator into the wire crate.
pub(crate) fn uuid_like_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{:x}-{:x}", crate::now_millis(), std::process::id(), n)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use apache_avro::from_value;
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::writer::datum::GenericDatumWriter;

    /// Writes like the codec's encoder (schema-aware serializer) and reads both ways its
    /// decoder does: value resolved to the reader schema then deserialized (another writer
    /// schema), and straight into the struct (the writer schema is the reader's).
    pub(crate) fn round_trip<R: Record + PartialEq + std::fmt::Debug>(record: &R) {
        let writer = GenericDatumWriter::builder(R::schema()).build().unwrap();
        let bytes = writer
            .write_ser_to_vec(record)
            .unwrap_or_else(|e| panic!("{} does not fit its schema: {e}", R::NAME));
        let reader = GenericDatumReader::builder(R::schema()).build().unwrap();
        let value = reader.read_value(&mut bytes.as_slice()).unwrap();
        let value = value.resolve(R::schema()).unwrap();
        let back: R = from_value(&value).unwrap_or_else(|e| panic!("from_value: {e}"));
        assert_eq!(&back, record);
        let direct: R = reader
            .read_deser(&mut bytes.as_slice())
            .unwrap_or_else(|e| panic!("read straight into {}: {e}", R::NAME));
        assert_eq!(&direct, record);
    }

    pub(crate) fn sample_request() -> NotificationRequest {
        NotificationRequest {
            notification_id: "n-1".into(),
            accepted_at: 1_700_000_000_000,
            client_id: Some("svc".into()),
            recipient: Recipient { user_id: Some("123456".into()), ..Recipient::default() },
            channels: vec!["email".into()],
            category: "transactional".into(),
            from: Some(Sender { email: Some("noreply@example.com".into()), name: None }),
            email: Some(EmailContent {
                subject: "Hi".into(),
                text: Some("Hello".into()),
                html: None,
            }),
            sms: None,
            push: Some(PushContent {
                title: None,
                body: "b".into(),
                data: BTreeMap::from([("k".into(), "v".into())]),
            }),
            metadata: BTreeMap::from([("trace".into(), "abc".into())]),
            send_at: Some(1_800_000_000_000),
            priority: Some("high".into()),
            expires_at: Some(1_800_000_060_000),
            collapse_key: Some("score".into()),
            template: Some(TemplateRef {
                id: "welcome".into(),
                locale: Some("ko-KR".into()),
                data: BTreeMap::from([("name".into(), "Ji".into())]),
            }),
        }
    }

    #[test]
    fn notification_request_matches_its_schema() {
        round_trip(&sample_request());
    }

    #[test]
    fn channel_message_matches_its_schema() {
        round_trip(&ChannelMessage {
            notification_id: "n-1".into(),
            channel: "email".into(),
            target: "a@example.com".into(),
            user_id: None,
            app_id: Some("com.example.app".into()),
            route: "default".into(),
            category: "security".into(),
            accepted_at: 5,
            from: None,
            email: Some(EmailContent { subject: "s".into(), text: None, html: Some("<b>".into()) }),
            sms: Some(SmsContent { text: "t".into() }),
            push: None,
            metadata: BTreeMap::new(),
            fallback: Some(Fallback { channel: "sms".into(), target: "+15551234567".into() }),
            priority: Some("normal".into()),
            expires_at: Some(9),
            collapse_key: Some("k".into()),
        });
    }

    #[test]
    fn a_push_becomes_an_sms_or_email_on_its_fallback_channel() {
        let push = ChannelMessage {
            notification_id: "n-1".into(),
            channel: "android".into(),
            target: "token".into(),
            user_id: Some("u".into()),
            app_id: Some("app".into()),
            route: "china".into(),
            category: "security".into(),
            accepted_at: 5,
            from: None,
            email: None,
            sms: None,
            push: Some(PushContent {
                title: Some("Code".into()),
                body: "123456".into(),
                data: BTreeMap::new(),
            }),
            metadata: BTreeMap::new(),
            fallback: Some(Fallback { channel: "sms".into(), target: "+15551234567".into() }),
            ..ChannelMessage::default()
        };
        let (channel, sms) = push.fallback_message().unwrap();
        assert_eq!(channel, Channel::Sms);
        assert_eq!(sms.target, "+15551234567");
        assert_eq!(sms.sms.unwrap().text, "Code: 123456");
        assert_eq!((sms.notification_id.as_str(), sms.route.as_str()), ("n-1", "default"));
        assert!(sms.push.is_none() && sms.fallback.is_none() && sms.app_id.is_none());
        assert_eq!(sms.metadata.get("fallback_from").map(String::as_str), Some("android"));
        let mut to_email = push.clone();
        to_email.fallback =
            Some(Fallback { channel: "email".into(), target: "u@example.com".into() });
        assert_eq!(to_email.fallback_message().unwrap().1.email.unwrap().subject, "Code");
        let mut none = push;
        none.fallback = None;
        assert!(none.fallback_message().is_none());
    }

    #[test]
    fn delivery_event_matches_its_schema() {
        let mut event = DeliveryEvent::new("n-1", EventKind::DeadLettered);
        event.reason = Some("provider said no".into());
        event.attempt = 3;
        round_trip(&event);
    }

    #[test]
    fn every_event_kind_is_a_schema_symbol() {
        let Schema::Record(record) = DeliveryEvent::schema() else { panic!("not a record") };
        let kind = record.fields.iter().find(|f| f.name == "kind").map(|f| &f.schema);
        let Some(Schema::Enum(e)) = kind else { panic!("kind is not an enum") };
        for symbol in &e.symbols {
            let parsed: EventKind = serde_json::from_value(serde_json::json!(symbol))
                .unwrap_or_else(|_| panic!("{symbol} has no EventKind"));
            assert_eq!(parsed.as_str(), symbol);
        }
    }
}
