//! `herald topics apply`: brings the cluster's topics to their definitions. Missing topics
//! are created; topics with fewer partitions than defined get more; topic settings
//! (`min.insync.replicas`, `retention.ms`, ...) are set where they differ. What Kafka cannot
//! change in place (fewer partitions, another replication factor) is reported, not forced.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, ResourceSpecifier,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::admin::{AdminError, TopicSpec, create_topics};
use super::{ClientSetupError, base_client_config};
use crate::config::KafkaConfig;

const TIMEOUT: Duration = Duration::from_secs(30);

/// What applying a topic's definition does (or did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicChange {
    Create {
        partitions: i32,
        replication: i32,
    },
    AddPartitions {
        from: i32,
        to: i32,
    },
    SetConfig {
        key: String,
        from: Option<String>,
        to: String,
    },
    /// Left as it is, with the reason (e.g. partitions cannot be removed).
    Kept {
        reason: String,
    },
}

impl fmt::Display for TopicChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create { partitions, replication } => {
                write!(f, "create: {partitions} partitions, replication factor {replication}")
            }
            Self::AddPartitions { from, to } => write!(f, "partitions {from} -> {to}"),
            Self::SetConfig { key, from, to } => {
                write!(f, "{key} {} -> {to}", from.as_deref().unwrap_or("(unset)"))
            }
            Self::Kept { reason } => write!(f, "kept: {reason}"),
        }
    }
}

/// A topic as the cluster has it now.
#[derive(Debug, Clone, Default)]
struct Existing {
    partitions: i32,
    replication: i32,
    /// Settings set on the topic itself (not broker defaults).
    overrides: BTreeMap<String, String>,
    /// Every setting's current value, whatever its source.
    effective: BTreeMap<String, String>,
}

/// The changes per topic that bring the cluster to `specs`; applied unless `mode` is a dry
/// run.
pub async fn apply_topics(
    config: &KafkaConfig,
    specs: &[TopicSpec],
    mode: super::ChangeMode,
) -> Result<Vec<(String, Vec<TopicChange>)>, AdminError> {
    let client: AdminClient<DefaultClientContext> = base_client_config(config, "herald-admin")
        .map_err(ClientSetupError::from)?
        .create()
        .map_err(|source| ClientSetupError::Create { kind: "admin", source })?;
    let existing = describe(config, &client, specs).await?;
    let plan: Vec<(String, Vec<TopicChange>)> = specs
        .iter()
        .map(|spec| (spec.name.clone(), changes(spec, existing.get(&spec.name))))
        .collect();
    if mode.is_dry_run() {
        return Ok(plan);
    }
    let missing: Vec<TopicSpec> =
        specs.iter().filter(|s| !existing.contains_key(&s.name)).cloned().collect();
    if !missing.is_empty() {
        create_topics(config, &missing).await?;
    }
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let grow: Vec<NewPartitions<'_>> = plan
        .iter()
        .flat_map(|(name, changes)| {
            changes.iter().filter_map(move |c| match c {
                TopicChange::AddPartitions { to, .. } => {
                    Some(NewPartitions::new(name, usize::try_from(*to).unwrap_or(0)))
                }
                _ => None,
            })
        })
        .collect();
    if !grow.is_empty() {
        let results = client.create_partitions(&grow, &options).await.map_err(|source| {
            AdminError::Operation { what: "adding partitions (CreatePartitions)", source }
        })?;
        for result in results {
            result.map_err(|(topic, code)| AdminError::Topic { topic, code })?;
        }
        super::admin::wait_until_visible(config, specs).await?;
    }
    // AlterConfigs replaces a topic's whole set of overrides, so the ones Herald does not
    // manage are sent along unchanged.
    let mut settings: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for (name, changes) in &plan {
        let sets: Vec<_> = changes
            .iter()
            .filter_map(|c| match c {
                TopicChange::SetConfig { key, to, .. } => Some((key.clone(), to.clone())),
                _ => None,
            })
            .collect();
        if sets.is_empty() || !existing.contains_key(name) {
            continue;
        }
        let mut all = existing.get(name).map(|e| e.overrides.clone()).unwrap_or_default();
        all.extend(sets);
        settings.push((name.clone(), all));
    }
    if !settings.is_empty() {
        let alters: Vec<AlterConfig<'_>> = settings
            .iter()
            .map(|(name, all)| {
                all.iter()
                    .fold(AlterConfig::new(ResourceSpecifier::Topic(name)), |a, (k, v)| a.set(k, v))
            })
            .collect();
        let results = client.alter_configs(&alters, &options).await.map_err(|source| {
            AdminError::Operation { what: "setting topic configuration (AlterConfigs)", source }
        })?;
        for result in results {
            result.map_err(|(specifier, code)| {
                let topic = match specifier {
                    rdkafka::admin::OwnedResourceSpecifier::Topic(name) => name,
                    other => format!("{other:?}"),
                };
                AdminError::Topic { topic, code }
            })?;
        }
    }
    Ok(plan)
}

fn changes(spec: &TopicSpec, existing: Option<&Existing>) -> Vec<TopicChange> {
    let Some(existing) = existing else {
        return vec![TopicChange::Create {
            partitions: spec.partitions,
            replication: spec.replication,
        }];
    };
    let mut changes = Vec::new();
    if existing.partitions < spec.partitions {
        changes.push(TopicChange::AddPartitions { from: existing.partitions, to: spec.partitions });
    } else if existing.partitions > spec.partitions {
        changes.push(TopicChange::Kept {
            reason: format!(
                "{} partitions, more than the {} defined (Kafka cannot remove partitions)",
                existing.partitions, spec.partitions
            ),
        });
    }
    if existing.replication != spec.replication && existing.replication > 0 {
        changes.push(TopicChange::Kept {
            reason: format!(
                "replication factor {}, not {} (changing it is a partition reassignment: kafka-reassign-partitions)",
                existing.replication, spec.replication
            ),
        });
    }
    for (key, value) in &spec.config {
        let current = existing.effective.get(key);
        if current != Some(value) {
            changes.push(TopicChange::SetConfig {
                key: key.clone(),
                from: current.cloned(),
                to: value.clone(),
            });
        }
    }
    changes
}

async fn describe(
    config: &KafkaConfig,
    client: &AdminClient<DefaultClientContext>,
    specs: &[TopicSpec],
) -> Result<BTreeMap<String, Existing>, AdminError> {
    let probe: BaseConsumer = base_client_config(config, "herald-admin")
        .map_err(ClientSetupError::from)?
        .create()
        .map_err(|source| ClientSetupError::Create { kind: "probe", source })?;
    let metadata = tokio::task::spawn_blocking(move || probe.fetch_metadata(None, TIMEOUT))
        .await
        .map_err(|_| rdkafka::error::KafkaError::Canceled)
        .and_then(|r| r)
        .map_err(|source| AdminError::Operation { what: "listing topics (Metadata)", source })?;
    let mut existing = BTreeMap::new();
    for topic in metadata.topics() {
        if topic.error().is_some() || !specs.iter().any(|s| s.name == topic.name()) {
            continue;
        }
        let partitions = i32::try_from(topic.partitions().len()).unwrap_or(i32::MAX);
        let replication = topic
            .partitions()
            .first()
            .map_or(0, |p| i32::try_from(p.replicas().len()).unwrap_or(i32::MAX));
        existing.insert(
            topic.name().to_owned(),
            Existing { partitions, replication, ..Existing::default() },
        );
    }
    if existing.is_empty() {
        return Ok(existing);
    }
    let names: Vec<String> = existing.keys().cloned().collect();
    let resources: Vec<ResourceSpecifier<'_>> =
        names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let described = client.describe_configs(&resources, &options).await.map_err(|source| {
        AdminError::Operation { what: "reading topic configuration (DescribeConfigs)", source }
    })?;
    for (name, result) in names.iter().zip(described) {
        let resource = match result {
            Ok(resource) => resource,
            Err(code) => return Err(AdminError::Topic { topic: name.clone(), code }),
        };
        let Some(topic) = existing.get_mut(name) else { continue };
        for entry in resource.entries {
            let Some(value) = entry.value else { continue };
            if entry.source == ConfigSource::DynamicTopic && !entry.is_sensitive {
                topic.overrides.insert(entry.name.clone(), value.clone());
            }
            topic.effective.insert(entry.name, value);
        }
    }
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(partitions: i32) -> TopicSpec {
        TopicSpec {
            name: "herald.requests".into(),
            partitions,
            replication: 3,
            config: vec![("min.insync.replicas".into(), "2".into())],
        }
    }

    #[test]
    fn a_missing_topic_is_created_and_an_existing_one_only_grows() {
        assert_eq!(
            changes(&spec(6), None),
            vec![TopicChange::Create { partitions: 6, replication: 3 }]
        );
        let mut existing = Existing { partitions: 4, replication: 3, ..Existing::default() };
        existing.effective.insert("min.insync.replicas".into(), "2".into());
        assert_eq!(
            changes(&spec(6), Some(&existing)),
            vec![TopicChange::AddPartitions { from: 4, to: 6 }]
        );
        let kept = changes(&spec(2), Some(&existing));
        assert!(
            matches!(&kept[..], [TopicChange::Kept { reason }] if reason.contains("cannot remove"))
        );
        assert!(changes(&spec(4), Some(&existing)).is_empty(), "nothing to do");
    }

    #[test]
    fn settings_that_differ_are_set_and_another_replication_factor_is_reported() {
        let mut existing = Existing { partitions: 6, replication: 1, ..Existing::default() };
        existing.effective.insert("min.insync.replicas".into(), "1".into());
        let changes = changes(&spec(6), Some(&existing));
        assert!(changes.contains(&TopicChange::SetConfig {
            key: "min.insync.replicas".into(),
            from: Some("1".into()),
            to: "2".into()
        }));
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, TopicChange::Kept { reason } if reason.contains("reassign")))
        );
    }
}
