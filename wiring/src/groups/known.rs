//! Herald's consumer groups and the topics each reads: what `--group` and `--topic` name.

use herald_schemas::{Channel, DELAY_TIERS, Lane};

use crate::config::HeraldConfig;

/// One of Herald's consumer groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownGroup {
    pub name: String,
    /// The topics its members read.
    pub topics: Vec<String>,
    /// The command whose processes are its members.
    pub run_by: String,
}

/// Every consumer group a role of this configuration joins.
pub fn known_groups(config: &HeraldConfig) -> Vec<KnownGroup> {
    let kafka = &config.kafka;
    let topics = kafka.topics();
    let tiers = config.dispatch.retry.policy().tiers();
    let group = |name: String, topics: Vec<String>, run_by: &str| KnownGroup {
        name,
        topics,
        run_by: run_by.to_owned(),
    };
    let mut all = vec![
        group(kafka.group("enricher"), vec![topics.requests_in(Lane::Urgent)], "herald enrich"),
        group(kafka.group("enricher-bulk"), vec![topics.requests_in(Lane::Bulk)], "herald enrich"),
        group(kafka.group("enricher-directory"), vec![topics.directory_updates()], "herald enrich"),
        group(
            kafka.group("scheduler"),
            DELAY_TIERS.iter().map(|t| topics.delay(t)).collect(),
            "herald enrich",
        ),
        group(kafka.group("status-sink"), vec![topics.events()], "herald ingest"),
    ];
    let webhook_tiers = u32::try_from(config.dispatch.retry.delays_ms.len()).unwrap_or(u32::MAX);
    let mut webhooks = vec![topics.events()];
    webhooks.extend((1..=webhook_tiers).map(|t| topics.webhook_retry(t)));
    all.push(group(kafka.group("webhooks"), webhooks, "herald ingest"));
    for channel in Channel::ALL {
        let run_by = format!("herald dispatch --channel {channel}");
        let mut urgent = vec![topics.channel_in(channel, Lane::Urgent)];
        urgent.extend((1..=tiers).map(|tier| topics.retry(channel, tier)));
        all.push(group(herald_dispatchers::group(kafka, channel), urgent, &run_by));
        let bulk = vec![topics.channel_in(channel, Lane::Bulk)];
        all.push(group(herald_dispatchers::lane_group(kafka, channel, Lane::Bulk), bulk, &run_by));
    }
    all
}

/// The group `given` names: one of Herald's by its full name (`herald-enricher`) or by its
/// name after the prefix (`enricher`). Another group only when its `topics` are named too: a
/// misspelt group must not read as a group with nothing to do.
pub fn resolve_group(
    config: &HeraldConfig,
    given: &str,
    topics: &[String],
) -> anyhow::Result<Option<KnownGroup>> {
    let known = known_groups(config);
    let full = config.kafka.group(given);
    if let Some(group) = known.iter().find(|g| g.name == given || g.name == full) {
        return Ok(Some(group.clone()));
    }
    if !topics.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = known.iter().map(|g| g.name.as_str()).collect();
    anyhow::bail!(
        "{given:?} is not one of Herald's consumer groups ({}); name another group's topics with --topic",
        names.join(", ")
    )
}

/// The topic `given` names: a pipeline topic by its full name or its name after the prefix
/// (`channel.email`), or any other topic by its full name.
pub fn resolve_topic(config: &HeraldConfig, given: &str) -> String {
    let prefixed = format!("{}{given}", config.kafka.topic_prefix);
    let pipeline = config.topic_specs().into_iter().any(|t| t.name == prefixed);
    if pipeline && !given.starts_with(&config.kafka.topic_prefix) {
        prefixed
    } else {
        given.to_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn groups_resolve_by_full_or_short_name_and_a_misspelt_one_is_refused_naming_the_known() {
        let config = HeraldConfig::default();
        let email = resolve_group(&config, "dispatch-email", &[]).unwrap().unwrap();
        assert_eq!(email.name, "herald-dispatch-email");
        assert!(email.topics.contains(&"herald.retry.email.1".to_owned()), "{email:?}");
        assert_eq!(email.run_by, "herald dispatch --channel email");
        assert_eq!(
            resolve_group(&config, "herald-enricher", &[]).unwrap().unwrap().name,
            "herald-enricher"
        );
        let error = resolve_group(&config, "herald-dispatch-emial", &[]).unwrap_err().to_string();
        assert!(error.contains("herald-dispatch-email") && error.contains("--topic"), "{error}");
        assert_eq!(
            resolve_group(&config, "analytics", &["clicks".into()]).unwrap(),
            None,
            "named topics"
        );
    }

    #[test]
    fn topics_resolve_by_full_or_short_name() {
        let config = HeraldConfig::default();
        assert_eq!(resolve_topic(&config, "channel.email"), "herald.channel.email");
        assert_eq!(resolve_topic(&config, "herald.channel.email"), "herald.channel.email");
        assert_eq!(resolve_topic(&config, "other.topic"), "other.topic");
    }
}
