//! Confluent wire format (magic byte 0, 4-byte schema id, Avro body) through a schema
//! registry, with `schema_registry_converter` doing the framing and registry calls.
//!
//! Producers register their compiled-in schema under the topic's subject
//! (TopicNameStrategy, `<topic>-value`), as Confluent serializers do with auto-registration.
//! Consumers decode with the writer's schema fetched by id and then resolve the value to
//! their own reader schema, so records written by older producers still decode after a field
//! with a default was added.
//!
//! The converter does all of that through an intermediate `Value` tree and clones the schema
//! for every record: about a sixth of the enricher's CPU when warm. So once a (topic, record)
//! pair's schema id is known, records are written straight from the struct with the
//! compiled-in schema; and a schema id whose schema is the reader's own (same Parsing
//! Canonical Form, so the same bytes) is read straight into the struct. Any other writer
//! schema takes the converter's resolving path.

use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};

use apache_avro::from_value;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, perform_sr_call, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SrCall, SubjectNameStrategy, SuppliedSchema,
};

use crate::records::{ChannelMessage, DeliveryEvent, NotificationRequest, Record};
pub use crate::registry::RegistryConfig;
use crate::topics::WireRecord;

#[derive(Debug, thiserror::Error)]
pub enum CodecSetupError {
    #[error("cannot build the schema registry client for {url}: {reason}")]
    Client { url: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("schema registry rejected or could not be reached for subject {subject}: {reason}")]
    Registry { subject: String, reason: String, retryable: bool },
    #[error("{record} does not fit its registered schema: {reason}")]
    Schema { record: &'static str, reason: String },
    /// `schema_registry.auto_register` is off and the registry lacks Herald's schema.
    #[error(
        "Herald's {record} schema is not registered under subject {subject}, and \
         schema_registry.auto_register is off: `herald schemas register` registers it"
    )]
    Unregistered { subject: String, record: &'static str },
}

impl EncodeError {
    /// True when trying again later may succeed (the registry was unreachable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, EncodeError::Registry { retryable: true, .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("record has no value")]
    Empty,
    #[error("schema registry could not be reached: {0}")]
    RegistryUnavailable(String),
    #[error("not a decodable Confluent Avro record: {0}")]
    Undecodable(String),
    #[error("writer schema cannot be read as {record}: {reason}")]
    Incompatible { record: &'static str, reason: String },
}

impl DecodeError {
    /// Retryable errors must not send the record to the DLQ: the record is fine, the registry
    /// is not. Everything else is poison.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DecodeError::RegistryUnavailable(_))
    }
}

/// The converter marks only network errors and 502/503 as retriable. Any answer that says the
/// registry (or our access to it) is unwell rather than the record is bad must not dead-letter
/// records either: other 5xx, auth failures, throttling.
fn is_registry_trouble(e: &SRCError) -> bool {
    const PREFIX: &str = "HTTP request to schema registry failed with status ";
    let status = e.error.strip_prefix(PREFIX).and_then(|rest| rest.get(..3));
    e.retriable
        || matches!(status, Some(s) if s.starts_with('5') || ["401", "403", "408", "429"].contains(&s))
}

fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    }
}

/// The message schema_registry_converter 6 gives when a value does not fit the schema.
const SERIALIZATION_FAILED: &str = "Could not get Avro bytes";

/// A record schema's datum writer and reader, built once per record type.
/// Reads a record body written with `R`'s own schema: what follows the Confluent frame of a
/// record whose schema id the codec knows to be `R`'s (its fast path; fuzzed on its own).
pub fn decode_body<R: Record>(mut body: &[u8]) -> Result<R, DecodeError> {
    R::datum().reader.read_deser(&mut body).map_err(|e| DecodeError::Undecodable(e.to_string()))
}

/// Magic byte and schema id: the Confluent framing before the Avro body.
const FRAME: usize = 5;

fn frame(id: u32) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(128);
    bytes.push(0);
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes
}

fn schema_id(payload: &[u8]) -> Option<u32> {
    match payload {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

pub struct AvroCodec {
    settings: SrSettings,
    /// The registry's URL, and a client that tells why it cannot be reached.
    url: String,
    probe: reqwest::Client,
    /// Whether schemas may be registered; if not, they are only looked up.
    auto_register: bool,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    /// Schema id registered for each record type on each topic.
    registered: RwLock<HashMap<String, HashMap<&'static str, u32>>>,
    /// Whether a writer schema id is a record type's own schema.
    same_as_reader: RwLock<HashMap<(u32, &'static str), bool>>,
}

impl fmt::Debug for AvroCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AvroCodec").finish_non_exhaustive()
    }
}

impl AvroCodec {
    pub fn new(config: &RegistryConfig) -> Result<Self, CodecSetupError> {
        let (settings, probe) = config
            .settings()
            .map_err(|reason| CodecSetupError::Client { url: config.url.clone(), reason })?;
        Ok(Self {
            probe,
            url: config.url.clone(),
            auto_register: config.auto_register,
            encoder: AvroEncoder::new(settings.clone()),
            decoder: AvroDecoder::new(settings.clone()),
            settings,
            registered: RwLock::default(),
            same_as_reader: RwLock::default(),
        })
    }

    fn registered_id<R: Record>(&self, topic: &str) -> Option<u32> {
        let registered = self.registered.read().unwrap_or_else(PoisonError::into_inner);
        registered.get(topic)?.get(R::NAME).copied()
    }

    /// Registers `R`'s schema under `<topic>-value` (a registry that has it answers with its
    /// id) and remembers the id, so that records of `R` for `topic` are written without
    /// asking again. Every role does this at start-up for the topics it writes: a registry
    /// that refuses Herald's schema (an incompatible version registered by someone else) or
    /// cannot be reached stops the role there, naming the subject, rather than failing
    /// records one by one later.
    ///
    /// With `schema_registry.auto_register` off, it only looks the schema up
    /// ([`AvroCodec::look_up`]).
    pub async fn register<R: Record>(&self, topic: &str) -> Result<u32, EncodeError> {
        if !self.auto_register {
            return self.look_up::<R>(topic).await;
        }
        let subject = format!("{topic}-value");
        let schema = SuppliedSchema::new(None, SchemaType::Avro, R::schema_json().to_owned());
        let registered = match post_schema(&self.settings, subject.clone(), schema).await {
            Ok(registered) => registered,
            Err(e) => return Err(self.registry_error(subject, &e).await),
        };
        let id = registered.id;
        let mut ids = self.registered.write().unwrap_or_else(PoisonError::into_inner);
        ids.entry(topic.to_owned()).or_default().insert(R::NAME, id);
        Ok(id)
    }

    /// The id `R`'s schema has under `<topic>-value`, asked of the registry without
    /// registering anything (a read-only client may do it), and remembered.
    pub async fn look_up<R: Record>(&self, topic: &str) -> Result<u32, EncodeError> {
        let subject = format!("{topic}-value");
        let body = serde_json::json!({ "schema": R::schema_json() }).to_string();
        let found =
            match perform_sr_call(&self.settings, SrCall::PostForVersion(&subject, &body)).await {
                Ok(found) => found,
                Err(e) if e.error.ends_with(" 404 Not Found") => {
                    return Err(EncodeError::Unregistered { subject, record: R::NAME });
                }
                Err(e) => return Err(self.registry_error(subject, &e).await),
            };
        let id = found.id.ok_or_else(|| EncodeError::Registry {
            subject: subject.clone(),
            reason: "the registry answered the look-up without an id".to_owned(),
            retryable: false,
        })?;
        let mut ids = self.registered.write().unwrap_or_else(PoisonError::into_inner);
        ids.entry(topic.to_owned()).or_default().insert(R::NAME, id);
        Ok(id)
    }

    /// A registry call's failure at start-up; when it never got an answer, with the root
    /// cause the converter drops (an unknown CA, a refused client certificate).
    async fn registry_error(&self, subject: String, e: &SRCError) -> EncodeError {
        let mut reason = describe(e);
        if e.retriable
            && let Some(why) = crate::registry::why_unreachable(&self.probe, &self.url).await
        {
            reason = format!("{reason} ({why})");
        }
        EncodeError::Registry { subject, reason, retryable: is_registry_trouble(e) }
    }

    /// Like [`AvroCodec::register`], for a record named at run time.
    pub async fn register_kind(&self, topic: &str, kind: WireRecord) -> Result<u32, EncodeError> {
        match kind {
            WireRecord::NotificationRequest => self.register::<NotificationRequest>(topic).await,
            WireRecord::ChannelMessage => self.register::<ChannelMessage>(topic).await,
            WireRecord::DeliveryEvent => self.register::<DeliveryEvent>(topic).await,
            WireRecord::DirectoryChange => self.register::<crate::DirectoryChange>(topic).await,
        }
    }

    /// Encodes `record` for `topic`, registering the record's schema under `<topic>-value`
    /// the first time (the registry answers with the existing id when it is already there).
    pub async fn encode<R: Record>(&self, topic: &str, record: &R) -> Result<Vec<u8>, EncodeError> {
        let known = match self.registered_id::<R>(topic) {
            Some(id) => Some(id),
            None if !self.auto_register => Some(self.look_up::<R>(topic).await?),
            None => None,
        };
        if let Some(id) = known {
            let mut bytes = frame(id);
            R::datum()
                .writer
                .write_ser(&mut bytes, record)
                .map_err(|e| EncodeError::Schema { record: R::NAME, reason: e.to_string() })?;
            return Ok(bytes);
        }
        let bytes = self.register_and_encode(topic, record).await?;
        if let Some(id) = schema_id(&bytes) {
            let mut registered = self.registered.write().unwrap_or_else(PoisonError::into_inner);
            registered.entry(topic.to_owned()).or_default().insert(R::NAME, id);
        }
        Ok(bytes)
    }

    /// The converter's path: registers the schema under the topic's subject (or finds its id).
    async fn register_and_encode<R: Record>(
        &self,
        topic: &str,
        record: &R,
    ) -> Result<Vec<u8>, EncodeError> {
        let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
            topic.to_owned(),
            false,
            SuppliedSchema::new(None, SchemaType::Avro, R::schema_json().to_owned()),
        );
        self.encoder.encode_struct(record, &strategy).await.map_err(|e| {
            // The converter reports registry and serialization failures with one type; the
            // serializer's message is fixed, everything else came from the registry lookup.
            if e.error == SERIALIZATION_FAILED {
                EncodeError::Schema { record: R::NAME, reason: describe(&e) }
            } else {
                let retryable = is_registry_trouble(&e);
                if retryable {
                    self.encoder.remove_errors_from_cache();
                }
                EncodeError::Registry {
                    subject: format!("{topic}-value"),
                    reason: describe(&e),
                    retryable,
                }
            }
        })
    }

    /// Decodes a Confluent-framed Avro payload written with any registered schema that can be
    /// resolved to `R`'s schema.
    pub async fn decode<R: Record>(&self, payload: Option<&[u8]>) -> Result<R, DecodeError> {
        let payload = payload.filter(|p| !p.is_empty()).ok_or(DecodeError::Empty)?;
        let id = schema_id(payload);
        let known = id.and_then(|id| {
            let same = self.same_as_reader.read().unwrap_or_else(PoisonError::into_inner);
            same.get(&(id, R::NAME)).copied()
        });
        if let (Some(true), Some(body)) = (known, payload.get(FRAME..)) {
            return decode_body(body);
        }
        let decoded = self.decoder.decode_with_schema(Some(payload)).await.map_err(|e| {
            if is_registry_trouble(&e) {
                // Non-retriable errors are cached by the converter; this one must be retried.
                self.decoder.remove_errors_from_cache();
                DecodeError::RegistryUnavailable(describe(&e))
            } else {
                DecodeError::Undecodable(describe(&e))
            }
        })?;
        let incompatible = |reason: String| DecodeError::Incompatible { record: R::NAME, reason };
        let decoded = decoded.ok_or(DecodeError::Empty)?;
        if let (Some(id), None) = (id, known) {
            let same = decoded.schema.parsed.canonical_form() == R::datum().canonical_form;
            let mut known = self.same_as_reader.write().unwrap_or_else(PoisonError::into_inner);
            known.insert((id, R::NAME), same);
        }
        let value = decoded.value.resolve(R::schema()).map_err(|e| incompatible(e.to_string()))?;
        from_value(&value).map_err(|e| incompatible(e.to_string()))
    }
}
