//! The template ids the directory holds, and the variables each needs, as the send API knows
//! them: read from the start of the compacted templates topic (written by the directory API,
//! `herald directory import` and `herald dev`) and kept up while ingest runs, so an unknown
//! `template_id` or a missing variable is a 422 rather than a `failed` event later. Roles do
//! not share databases: this is how the directory's templates reach ingest.
//!
//! Before refusing, the catalog catches up with the topic (where it ends now, asked of the
//! brokers): a template written through any API instance is known to every instance once its
//! write was answered.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use herald_runtime::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// The group id (after `kafka.group_prefix`) of the catalog's reader: it is assigned every
/// partition and joins nothing.
pub const GROUP: &str = "ingest-templates";

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
    /// The next offset read of each partition, and the reader that can ask where they end.
    follower: Arc<Follower>,
}

#[derive(Default)]
struct Follower {
    read: std::sync::Mutex<HashMap<i32, i64>>,
    reader: std::sync::OnceLock<(Arc<StreamConsumer>, String)>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower").finish_non_exhaustive()
    }
}

/// How long a refusal waits for the catalog to catch up with the topic.
const CATCH_UP: Duration = Duration::from_secs(3);

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

    /// Like [`TemplateCatalog::refusal`], but a refusal only once the catalog has read the
    /// templates topic as far as it reaches now (for up to a few seconds).
    pub async fn refusal_caught_up(
        &self,
        id: &str,
        data: &std::collections::BTreeMap<String, String>,
    ) -> Option<TemplateRefusal> {
        let refusal = self.refusal(id, data)?;
        if self.catch_up().await { self.refusal(id, data) } else { Some(refusal) }
    }

    /// Whether the catalog read every partition to where it ends now.
    async fn catch_up(&self) -> bool {
        let Some((reader, topic)) = self.follower.reader.get().cloned() else { return false };
        let partitions: Vec<i32> = self.read_to().keys().copied().collect();
        let ends = tokio::task::spawn_blocking(move || {
            let mut asked = TopicPartitionList::new();
            for partition in partitions {
                asked.add_partition_offset(&topic, partition, Offset::End).ok()?;
            }
            reader.offsets_for_times(asked, Duration::from_secs(2)).ok()
        })
        .await
        .ok()
        .flatten();
        let Some(ends) = ends else { return false };
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        loop {
            let read = self.read_to();
            let behind = ends.elements().iter().any(|e| match e.offset() {
                Offset::Offset(end) => read.get(&e.partition()).is_none_or(|next| *next < end),
                _ => false,
            });
            if !behind {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn read_to(&self) -> HashMap<i32, i64> {
        self.follower.read.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn read(&self, partition: i32, next: i64) {
        if let Ok(mut read) = self.follower.read.lock() {
            let at = read.entry(partition).or_insert(next);
            *at = (*at).max(next);
        }
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
        client.set("group.id", kafka.group(GROUP)).set("enable.auto.commit", "false").create()?,
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
            for partition in &partitions {
                assignment.add_partition_offset(&topic, *partition, Offset::Beginning)?;
                catalog.read(*partition, 0);
            }
            consumer.assign(&assignment)?;
            // Its own client: a broker answers one connection's requests in order, and the
            // follower's fetch waits on the broker for new records.
            let asking: StreamConsumer = client.create()?;
            let _ = catalog.follower.reader.set((Arc::new(asking), topic.clone()));
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
                catalog.read(message.partition(), message.offset() + 1);
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
