//! What a Kafka principal must be allowed to do for a role or command to work (the ACLs an
//! operator grants), and the start-up check that names the topics a cluster's authorizer
//! hides from a role before it has read or written anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::{ClientSetupError, base_client_config};
use crate::config::KafkaConfig;

/// A Kafka ACL operation, as `kafka-acls.sh --operation` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Read,
    Write,
    Describe,
    Create,
    Alter,
    DescribeConfigs,
    AlterConfigs,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Describe => "Describe",
            Operation::Create => "Create",
            Operation::Alter => "Alter",
            Operation::DescribeConfigs => "DescribeConfigs",
            Operation::AlterConfigs => "AlterConfigs",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource an ACL names, by its literal name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Topic(String),
    Group(String),
}

impl Resource {
    /// `topic` or `group`, as `kafka-acls.sh` takes it (`--topic NAME`).
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Topic(_) => "topic",
            Resource::Group(_) => "group",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Resource::Topic(name) | Resource::Group(name) => name,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.name())
    }
}

/// Every operation a role or command needs, per resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    needs: BTreeMap<Resource, BTreeSet<Operation>>,
}

impl Access {
    pub fn allow(&mut self, resource: Resource, operations: &[Operation]) -> &mut Self {
        self.needs.entry(resource).or_default().extend(operations.iter().copied());
        self
    }

    /// Every topic of `topics` with `operations`.
    pub fn topics<I: IntoIterator<Item = String>>(
        &mut self,
        topics: I,
        operations: &[Operation],
    ) -> &mut Self {
        for topic in topics {
            self.allow(Resource::Topic(topic), operations);
        }
        self
    }

    /// A group the role joins (and commits in).
    pub fn group(&mut self, group: String) -> &mut Self {
        self.allow(Resource::Group(group), &[Operation::Read])
    }

    /// The group id of a client that is assigned partitions and joins nothing: librdkafka
    /// needs one to assign, and asks the cluster for its coordinator (Describe).
    pub fn reader_group(&mut self, group: String) -> &mut Self {
        self.allow(Resource::Group(group), &[Operation::Describe])
    }

    pub fn merge(&mut self, other: &Access) -> &mut Self {
        for (resource, operations) in &other.needs {
            self.needs.entry(resource.clone()).or_default().extend(operations);
        }
        self
    }

    pub fn entries(&self) -> impl Iterator<Item = (&Resource, &BTreeSet<Operation>)> {
        self.needs.iter()
    }

    pub fn needs(&self, resource: &Resource) -> Option<&BTreeSet<Operation>> {
        self.needs.get(resource)
    }

    /// The resources of one kind that need exactly `operations`, grouped so that one
    /// `kafka-acls.sh --add` per group grants them: `(kind, operations, names)`.
    pub fn grants(&self) -> Vec<(&'static str, Vec<Operation>, Vec<String>)> {
        let mut grouped: BTreeMap<(&'static str, Vec<Operation>), Vec<String>> = BTreeMap::new();
        for (resource, operations) in &self.needs {
            let operations: Vec<Operation> = operations.iter().copied().collect();
            grouped
                .entry((resource.kind(), operations))
                .or_default()
                .push(resource.name().to_owned());
        }
        grouped.into_iter().map(|((kind, operations), names)| (kind, operations, names)).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Setup(#[from] ClientSetupError),
    #[error("{}", denied_message(.principal, .denied))]
    Denied { principal: String, denied: Vec<(Resource, Vec<Operation>)> },
}

fn denied_message(principal: &str, denied: &[(Resource, Vec<Operation>)]) -> String {
    let each: Vec<String> = denied
        .iter()
        .map(|(resource, operations)| {
            let operations: Vec<&str> = operations.iter().map(|o| o.as_str()).collect();
            format!("{} on {resource}", operations.join(", "))
        })
        .collect();
    format!(
        "Kafka's authorizer denies {principal} access it needs: {} (`herald acls` lists every ACL a role needs)",
        each.join("; ")
    )
}

/// Whether `error` is Kafka's authorizer refusing a topic, a group or the cluster: no
/// retry cures it, only an ACL.
pub fn is_denial(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
        )
    )
}

/// Who the cluster sees: `User:<sasl.username>` when the configuration names one (a user
/// name is no secret, wherever it comes from).
pub fn principal(config: &KafkaConfig) -> String {
    const USER: &str = "sasl.username";
    let user = config
        .properties
        .get(USER)
        .cloned()
        .or_else(|| config.secret_properties.get(USER).and_then(|source| source.read().ok()));
    user.map_or_else(|| "this client".to_owned(), |user| format!("User:{user}"))
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the cluster about every topic of `access` the way a role's clients will, and fails
/// naming each one the authorizer hides from it (no Describe: none of Read, Write or
/// Describe granted), before the role has read or written anything. What only a later
/// request can reveal is named when it happens: a group it may not join by its consumer
/// (which then stops the role), Write on a topic it may read by its producer. Answers other
/// than a refusal (a topic not created yet) are left to the role, which waits for or reports
/// them as it always has.
pub async fn check(config: &KafkaConfig, access: &Access) -> Result<(), AccessError> {
    let config = config.clone();
    let access = access.clone();
    tokio::task::spawn_blocking(move || check_blocking(&config, &access))
        .await
        .unwrap_or_else(|_| Ok(()))
}

fn check_blocking(config: &KafkaConfig, access: &Access) -> Result<(), AccessError> {
    let probe: BaseConsumer = base_client_config(config, "herald-access")
        .map_err(ClientSetupError::from)?
        .create()
        .map_err(|source| ClientSetupError::Create { kind: "probe", source })?;
    let mut denied = Vec::new();
    for (resource, operations) in access.entries() {
        let Resource::Topic(topic) = resource else { continue };
        let refused = match probe.fetch_metadata(Some(topic), TIMEOUT) {
            Ok(metadata) => metadata.topics().iter().any(|t| {
                t.error().is_some_and(|e| {
                    RDKafkaErrorCode::from(e) == RDKafkaErrorCode::TopicAuthorizationFailed
                })
            }),
            Err(e) => is_denial(&e),
        };
        if refused {
            denied.push((resource.clone(), operations.iter().copied().collect()));
        }
    }
    if denied.is_empty() {
        return Ok(());
    }
    Err(AccessError::Denied { principal: principal(config), denied })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_group_resources_of_one_kind_by_the_operations_they_need() {
        let mut access = Access::default();
        access
            .topics(["a".to_owned(), "b".to_owned()], &[Operation::Write])
            .topics(["c".to_owned()], &[Operation::Read, Operation::Write])
            .topics(["a".to_owned()], &[Operation::Write])
            .group("g".to_owned());
        assert_eq!(
            access.grants(),
            vec![
                ("group", vec![Operation::Read], vec!["g".to_owned()]),
                ("topic", vec![Operation::Read, Operation::Write], vec!["c".to_owned()]),
                ("topic", vec![Operation::Write], vec!["a".to_owned(), "b".to_owned()]),
            ]
        );
    }

    #[test]
    fn a_denial_names_the_principal_each_resource_and_what_it_needs() {
        let error = AccessError::Denied {
            principal: "User:herald-ingest".into(),
            denied: vec![
                (Resource::Topic("herald.requests".into()), vec![Operation::Write]),
                (Resource::Group("herald-webhooks".into()), vec![Operation::Read]),
            ],
        };
        assert_eq!(
            error.to_string(),
            "Kafka's authorizer denies User:herald-ingest access it needs: Write on topic herald.requests; Read on group herald-webhooks (`herald acls` lists every ACL a role needs)"
        );
    }
}
