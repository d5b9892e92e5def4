//! The Kafka ACLs each role and each operator command needs under this configuration's
//! topic and group names: what `herald acls` prints and what each role checks at start-up.
//! Literal names only, so that one principal's grant never reaches another role's topics.

use herald_runtime::kafka::acl::{Access, Operation, Resource};
use herald_schemas::{Channel, DELAY_TIERS, Lane};

use crate::config::HeraldConfig;

use Operation::{Alter, AlterConfigs, Create, Describe, DescribeConfigs, Read, Write};

/// A process that talks to Kafka: a role, or an operator's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    /// `herald ingest`.
    Ingest,
    /// `herald enrich`.
    Enrich,
    /// `herald dispatch --channel <every channel>` (one principal for the four).
    Dispatch,
    /// `herald topics apply`.
    TopicsApply,
    /// `herald topics apply --check`.
    TopicsCheck,
    /// `herald groups lag` and `herald groups describe`.
    Groups,
    /// `herald groups reset-offsets`.
    GroupsReset,
    /// `herald dlq list` and `herald dlq show`.
    Dlq,
    /// `herald dlq redrive`.
    DlqRedrive,
    /// `herald replay` (of the request topics, its default).
    Replay,
    /// `herald directory import`.
    DirectoryImport,
    /// `herald produce`.
    Produce,
}

impl Client {
    pub const ROLES: [Client; 3] = [Client::Ingest, Client::Enrich, Client::Dispatch];

    pub const ALL: [Client; 12] = [
        Client::Ingest,
        Client::Enrich,
        Client::Dispatch,
        Client::TopicsApply,
        Client::TopicsCheck,
        Client::Groups,
        Client::GroupsReset,
        Client::Dlq,
        Client::DlqRedrive,
        Client::Replay,
        Client::DirectoryImport,
        Client::Produce,
    ];

    /// The command it is, as an operator types it.
    pub fn command(self) -> &'static str {
        match self {
            Client::Ingest => "herald ingest",
            Client::Enrich => "herald enrich",
            Client::Dispatch => "herald dispatch",
            Client::TopicsApply => "herald topics apply",
            Client::TopicsCheck => "herald topics apply --check",
            Client::Groups => "herald groups lag|describe",
            Client::GroupsReset => "herald groups reset-offsets",
            Client::Dlq => "herald dlq list|show",
            Client::DlqRedrive => "herald dlq redrive",
            Client::Replay => "herald replay",
            Client::DirectoryImport => "herald directory import",
            Client::Produce => "herald produce",
        }
    }

    /// The principal `herald acls` grants to unless told another: one user per role, one
    /// for the operator's commands.
    pub fn default_principal(self) -> &'static str {
        match self {
            Client::Ingest => "User:herald-ingest",
            Client::Enrich => "User:herald-enricher",
            Client::Dispatch => "User:herald-dispatch",
            Client::TopicsCheck => "User:herald-setup-check",
            _ => "User:herald-operator",
        }
    }
}

/// What `client` needs under `config`.
pub fn access(config: &HeraldConfig, client: Client) -> Access {
    match client {
        Client::Ingest => ingest(config),
        Client::Enrich => enricher(config),
        Client::Dispatch => {
            let mut all = Access::default();
            for channel in Channel::ALL {
                all.merge(&dispatcher(config, channel));
            }
            all
        }
        command => operator(config, command),
    }
}

fn lanes<F: Fn(Lane) -> String>(f: F) -> Vec<String> {
    Lane::ALL.into_iter().map(f).collect()
}

fn tiers<F: Fn(u32) -> String>(count: u32, f: F) -> Vec<String> {
    (1..=count).map(f).collect()
}

/// The send API, the directory API, the status sink, webhooks, the templates catalog and
/// erasure.
pub fn ingest(config: &HeraldConfig) -> Access {
    let kafka = &config.kafka;
    let topics = kafka.topics();
    let webhook_tiers = u32::try_from(config.dispatch.retry.delays_ms.len()).unwrap_or(u32::MAX);
    let mut access = Access::default();
    access
        // Requests (sent now, or scheduled into a delay tier) and their `accepted` events.
        .topics(lanes(|l| topics.requests_in(l)), &[Write])
        .topics(DELAY_TIERS.iter().map(|t| topics.delay(t)), &[Write])
        // The directory API writes changes and templates; erasure and the catalog read them.
        .topics([topics.directory_changes(), topics.templates()], &[Read, Write])
        // The status sink and webhooks read events; webhooks retry in their own tiers.
        .topics([topics.events()], &[Read, Write])
        .topics(tiers(webhook_tiers, |t| topics.webhook_retry(t)), &[Read, Write])
        .topics([topics.dlq()], &[Write])
        .group(kafka.group("status-sink"))
        .group(kafka.group("webhooks"))
        .group(kafka.group(herald_ingest::erasure::GROUP))
        .reader_group(kafka.group(herald_ingest::templates::GROUP));
    access
}

/// The fan-out of both lanes, the directory's applier and the scheduler.
pub fn enricher(config: &HeraldConfig) -> Access {
    let kafka = &config.kafka;
    let topics = kafka.topics();
    let mut access = Access::default();
    let channels: Vec<String> = Channel::ALL
        .into_iter()
        .flat_map(|c| Lane::ALL.map(|lane| topics.channel_in(c, lane)))
        .collect();
    access
        // Requests in, due ones from the scheduler out again; delayed ones hop down the tiers.
        .topics(lanes(|l| topics.requests_in(l)), &[Read, Write])
        .topics(DELAY_TIERS.iter().map(|t| topics.delay(t)), &[Read, Write])
        .topics(channels, &[Write])
        // The applier reads the directory's topics and writes the changes that dead device
        // tokens (directory updates) cause.
        .topics([topics.directory_changes()], &[Read, Write])
        .topics([topics.templates(), topics.directory_updates()], &[Read])
        .topics([topics.events(), topics.dlq()], &[Write])
        .group(herald_enricher::group(kafka, Lane::Urgent))
        .group(herald_enricher::group(kafka, Lane::Bulk))
        .group(kafka.group(herald_enricher::DIRECTORY_GROUP))
        .group(kafka.group(herald_enricher::SCHEDULER_GROUP))
        .reader_group(kafka.group(herald_enricher::freshness::TAIL_GROUP))
        .reader_group(kafka.group(herald_enricher::freshness::ENDS_GROUP));
    access
}

/// One channel's dispatcher: both lanes, its retry tiers, and a push channel's fallback to
/// SMS or email.
pub fn dispatcher(config: &HeraldConfig, channel: Channel) -> Access {
    let kafka = &config.kafka;
    let topics = kafka.topics();
    let retry_tiers = config.dispatch.retry.policy().tiers();
    let mut access = Access::default();
    access
        .topics(lanes(|l| topics.channel_in(channel, l)), &[Read])
        .topics(tiers(retry_tiers, |t| topics.retry(channel, t)), &[Read, Write])
        .topics([topics.events(), topics.directory_updates(), topics.dlq()], &[Write])
        .group(herald_dispatchers::group(kafka, channel))
        .group(herald_dispatchers::lane_group(kafka, channel, Lane::Bulk));
    if matches!(channel, Channel::Ios | Channel::Android) {
        access.topics([topics.channel(Channel::Sms), topics.channel(Channel::Email)], &[Write]);
    }
    access
}

fn operator(config: &HeraldConfig, command: Client) -> Access {
    let kafka = &config.kafka;
    let topics = kafka.topics();
    let every_topic = || config.topic_specs().into_iter().map(|t| t.name);
    let mut access = Access::default();
    match command {
        Client::TopicsApply => {
            access.topics(every_topic(), &[Create, Describe, DescribeConfigs, Alter, AlterConfigs]);
        }
        Client::TopicsCheck => {
            access.topics(every_topic(), &[Describe, DescribeConfigs]);
        }
        Client::Groups | Client::GroupsReset => {
            // A reset reads a partition's last record where the broker's time index cannot
            // tell (Tansu), so it reads the group's topics.
            let operations: &[Operation] =
                if command == Client::Groups { &[Describe] } else { &[Read] };
            access.reader_group(kafka.group(herald_runtime::kafka::group_offsets::PROBE_GROUP));
            for group in crate::groups::known_groups(config) {
                access.topics(group.topics, operations);
                access.allow(Resource::Group(group.name), operations);
            }
        }
        Client::Dlq => {
            access.topics([topics.dlq(), topics.dlq_redriven()], &[Read]);
            access.reader_group(kafka.group(crate::dlq::TOOL_GROUP));
        }
        Client::DlqRedrive => {
            // A letter goes back to the first retry tier of its channel, or else to the topic
            // it was read from: any topic a role reads.
            access.topics([topics.dlq()], &[Read]).topics([topics.dlq_redriven()], &[Read, Write]);
            access.reader_group(kafka.group(crate::dlq::TOOL_GROUP));
            for role in Client::ROLES {
                let read = access_of(config, role, Read);
                access.topics(read, &[Write]);
            }
            for channel in Channel::ALL {
                access.topics([topics.retry(channel, 1)], &[Write]);
            }
        }
        Client::Replay => {
            access.topics(lanes(|l| topics.requests_in(l)), &[Read, Write]);
            access.reader_group(kafka.group(crate::replay::READER_GROUP));
        }
        Client::DirectoryImport => {
            access.topics([topics.directory_changes(), topics.templates()], &[Write]);
        }
        Client::Produce => {
            access.topics(lanes(|l| topics.requests_in(l)), &[Write]);
        }
        Client::Ingest | Client::Enrich | Client::Dispatch => {}
    }
    access
}

/// The topics `client` needs `operation` on.
fn access_of(config: &HeraldConfig, client: Client, operation: Operation) -> Vec<String> {
    access(config, client)
        .entries()
        .filter(|(_, operations)| operations.contains(&operation))
        .filter_map(|(resource, _)| match resource {
            Resource::Topic(name) => Some(name.clone()),
            Resource::Group(_) => None,
        })
        .collect()
}

/// `client`'s ACLs as a table: one line per resource and the operations it needs.
pub fn table(config: &HeraldConfig, client: Client, principal: &str) -> String {
    let mut out = format!("# {} ({principal})\n", client.command());
    for (resource, operations) in access(config, client).entries() {
        let operations: Vec<&str> = operations.iter().map(|o| o.as_str()).collect();
        out.push_str(&format!(
            "{:<6} {:<34} {}\n",
            resource.kind(),
            resource.name(),
            operations.join(", ")
        ));
    }
    out
}

/// `client`'s ACLs as a Markdown table (what docs/production.md shows for the default
/// configuration): one row per kind of resource and set of operations.
pub fn markdown(config: &HeraldConfig, client: Client) -> String {
    let mut out = format!(
        "`{}` as `{}`:\n\n| Resource | Names | Operations |\n|---|---|---|\n",
        client.command(),
        client.default_principal()
    );
    for (kind, operations, names) in access(config, client).grants() {
        let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        let operations: Vec<&str> = operations.iter().map(|o| o.as_str()).collect();
        out.push_str(&format!("| {kind} | {} | {} |\n", names.join(", "), operations.join(", ")));
    }
    out
}

/// `client`'s ACLs as `kafka-acls.sh` commands, one per kind of resource and set of
/// operations. `admin` is the `--command-config` file of a principal allowed to alter ACLs.
pub fn commands(config: &HeraldConfig, client: Client, principal: &str, admin: &str) -> String {
    let mut out = format!("# {}\n", client.command());
    for (kind, operations, names) in access(config, client).grants() {
        let mut line = format!(
            "kafka-acls.sh --bootstrap-server {} --command-config {admin} --add --allow-principal {principal}",
            config.kafka.bootstrap_servers
        );
        for operation in operations {
            line.push_str(&format!(" --operation {operation}"));
        }
        for name in names {
            line.push_str(&format!(" --{kind} {name}"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn needs(access: &Access, resource: &Resource) -> Vec<Operation> {
        access.needs(resource).map(|o| o.iter().copied().collect()).unwrap_or_default()
    }

    #[test]
    fn each_role_reads_only_its_inputs_and_joins_only_its_groups() {
        let config = HeraldConfig::default();
        let topic = |name: &str| Resource::Topic(name.to_owned());
        let group = |name: &str| Resource::Group(name.to_owned());
        let ingest = access(&config, Client::Ingest);
        assert_eq!(needs(&ingest, &topic("herald.requests")), [Write]);
        assert_eq!(needs(&ingest, &topic("herald.channel.email")), []);
        assert_eq!(needs(&ingest, &group("herald-webhooks")), [Read]);
        let enricher = access(&config, Client::Enrich);
        assert_eq!(needs(&enricher, &topic("herald.requests.bulk")), [Read, Write]);
        assert_eq!(needs(&enricher, &topic("herald.channel.sms.bulk")), [Write]);
        assert_eq!(needs(&enricher, &group("herald-scheduler")), [Read]);
        let email = dispatcher(&config, Channel::Email);
        assert_eq!(needs(&email, &topic("herald.retry.email.1")), [Read, Write]);
        assert_eq!(needs(&email, &topic("herald.retry.sms.1")), []);
        assert_eq!(needs(&email, &topic("herald.channel.sms")), [], "email falls back nowhere");
        let ios = dispatcher(&config, Channel::Ios);
        assert_eq!(needs(&ios, &topic("herald.channel.sms")), [Write], "push falls back to SMS");
        assert_eq!(needs(&ios, &group("herald-dispatch-ios-bulk")), [Read]);
    }

    #[test]
    fn every_consumer_group_an_operator_sees_is_one_a_role_joins() {
        let config = HeraldConfig::default();
        let joined: Vec<String> = Client::ROLES
            .iter()
            .flat_map(|role| {
                access(&config, *role)
                    .entries()
                    .filter(|(r, _)| r.kind() == "group")
                    .map(|(r, _)| r.name().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        for group in crate::groups::known_groups(&config) {
            assert!(joined.contains(&group.name), "{} is joined by a role's ACLs", group.name);
        }
    }

    #[test]
    fn commands_grant_each_kind_of_resource_its_operations_in_one_line() {
        let config = HeraldConfig::default();
        let out = commands(&config, Client::Produce, "User:svc", "admin.properties");
        assert_eq!(
            out,
            "# herald produce\nkafka-acls.sh --bootstrap-server 127.0.0.1:9092 --command-config admin.properties --add --allow-principal User:svc --operation Write --topic herald.requests --topic herald.requests.bulk\n"
        );
    }
}
