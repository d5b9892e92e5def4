//! The template ids the directory holds, and the variables each needs, as the send API knows
//! them: read from the start of the compacted templates topic (written by `herald directory
//! import` and `herald dev`) and kept up while ingest runs, so an unknown `template_id` or a
//! missing variable is a 422 rather than a `failed` event later. Roles do not share
//! databases: this is how the directory's templates reach ingest.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use herald_runtime::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// What the templates topic says of one template: a JSON value (`{"variables": [...]}`); an
/// older announcement's plain value announces the id alone.
#[derive(Debug, Default, serde::Deserialize)]
struct Announcement {
    #[serde(default)]
    variables: Vec<String>,
}

/// Why a request naming a template is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateRefusal {
    Unknown,
    MissingVariables(Vec<String>),
}

#[derive(Debug, Clone, Default)]
pub struct TemplateCatalog {
    /// Each template id with the variables every variant of it uses.
    templates: Arc<RwLock<HashMap<String, Vec<String>>>>,
}

impl TemplateCatalog {
    /// Why a request naming template `id` with `data` is refused, if it is: an id the
    /// directory does not hold, or a variable every variant uses missing from `data`. With no
    /// template announced at all nothing is: the directory may have been filled another way.
    pub fn refusal(
        &self,
        id: &str,
        data: &std::collections::BTreeMap<String, String>,
    ) -> Option<TemplateRefusal> {
        let templates = self.templates.read().ok()?;
        if templates.is_empty() {
            return None;
        }
        let Some(variables) = templates.get(id) else { return Some(TemplateRefusal::Unknown) };
        let missing: Vec<String> =
            variables.iter().filter(|v| !data.contains_key(*v)).cloned().collect();
        (!missing.is_empty()).then_some(TemplateRefusal::MissingVariables(missing))
    }

    /// A record of the topic: a value announces the id (and its variables), none (a
    /// tombstone) withdraws it.
    pub fn apply(&self, id: &str, value: Option<&[u8]>) {
        if let Ok(mut templates) = self.templates.write() {
            match value.filter(|v| !v.is_empty()) {
                Some(value) => {
                    let announced: Announcement = serde_json::from_slice(value).unwrap_or_default();
                    templates.insert(id.to_owned(), announced.variables);
                }
                None => {
                    templates.remove(id);
                }
            }
        }
    }
}

/// Why following the templates topic stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Secret(#[from] herald_runtime::config::SecretError),
    #[error("cannot read the templates topic: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Reads the templates topic into `catalog` from its start until `shutdown`.
pub async fn follow(
    kafka: &KafkaConfig,
    catalog: TemplateCatalog,
    shutdown: CancellationToken,
) -> Result<(), FollowError> {
    let mut client = ClientConfig::new();
    for (key, value) in kafka.client_properties()? {
        client.set(key, value);
    }
    // Assigned, not subscribed: every ingest reads every partition and commits nothing.
    let consumer: Arc<StreamConsumer> = Arc::new(
        client
            .set("group.id", kafka.group("ingest-templates"))
            .set("enable.auto.commit", "false")
            .create()?,
    );
    let topic = kafka.topics().templates();
    loop {
        let (probe, name) = (Arc::clone(&consumer), topic.clone());
        let metadata = tokio::task::spawn_blocking(move || {
            probe.fetch_metadata(Some(&name), Duration::from_secs(5))
        })
        .await;
        let partitions: Vec<i32> = match metadata {
            Ok(Ok(m)) => {
                m.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect()
            }
            _ => Vec::new(),
        };
        if !partitions.is_empty() {
            let mut assignment = TopicPartitionList::new();
            for partition in partitions {
                assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
            }
            consumer.assign(&assignment)?;
            break;
        }
        tracing::debug!(%topic, "templates topic not there yet");
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            received = consumer.recv() => received,
        };
        match received {
            Ok(message) => {
                if let Some(id) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    catalog.apply(id, message.payload());
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the templates topic"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_template_or_a_missing_variable_is_refused_once_any_is_known() {
        let catalog = TemplateCatalog::default();
        let data =
            |pairs: &[&str]| pairs.iter().map(|k| ((*k).to_owned(), "x".to_owned())).collect();
        assert_eq!(catalog.refusal("otp", &data(&[])), None, "nothing announced: nothing refused");
        catalog.apply("otp", Some(br#"{"variables": ["code"]}"#));
        assert_eq!(catalog.refusal("otp", &data(&["code"])), None);
        assert_eq!(
            catalog.refusal("otp", &data(&[])),
            Some(TemplateRefusal::MissingVariables(vec!["code".into()]))
        );
        assert_eq!(catalog.refusal("welcome", &data(&[])), Some(TemplateRefusal::Unknown));
        catalog.apply("welcome", Some(b"present"));
        assert_eq!(catalog.refusal("welcome", &data(&[])), None, "an older announcement");
        catalog.apply("otp", None);
        assert_eq!(catalog.refusal("otp", &data(&["code"])), Some(TemplateRefusal::Unknown));
    }
}
