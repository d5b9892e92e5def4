//! `herald groups`: where Herald's consumer groups stand (lag, members) and moving a stopped
//! group's offsets to a point in time.

mod describe;
mod known;

pub use describe::{
    GroupDescription, GroupMember, describe, render, render_description, render_resets,
};
pub use herald_runtime::kafka::group_offsets::{PartitionLag, Reset, lag, probe, reset_to_time};
pub use known::{KnownGroup, known_groups, resolve_group, resolve_topic};

use crate::config::HeraldConfig;
use herald_runtime::kafka::ChangeMode;

#[derive(clap::Subcommand, Debug)]
pub enum GroupsCommand {
    /// State and members of a group, with the partitions each owns (Kafka's classic groups:
    /// Tansu 0.6 does not answer DescribeGroups).
    Describe {
        /// A Herald group by its name (herald-enricher) or its name after the prefix (enricher).
        #[arg(long)]
        group: String,
    },
    /// Committed offset, log start and end, and lag of a group on each partition it reads
    /// (a partition it never committed counts from its log start).
    Lag {
        /// e.g. enricher, dispatch-email, status-sink (or herald-enricher, ...).
        #[arg(long)]
        group: String,
        /// Topics to report (default: the group's own), by full name or after the prefix.
        #[arg(long)]
        topic: Vec<String>,
    },
    /// Move a stopped group's committed offsets to a point in time: its members re-read
    /// from there when they start again. Refused while the group has running members.
    ResetOffsets {
        #[arg(long)]
        group: String,
        /// RFC 3339 time, or a duration meaning that long ago (2h).
        #[arg(long)]
        to_datetime: String,
        /// Topics to move (default: the group's own), by full name or after the prefix.
        #[arg(long)]
        topic: Vec<String>,
        /// Show the moves; commit nothing.
        #[arg(long)]
        dry_run: bool,
        /// Move them even though the broker cannot say whether the group has running members
        /// (Tansu does not answer DescribeGroups): once you stopped them yourself.
        #[arg(long)]
        force: bool,
    },
}

/// The group `--group` and `--topic` name, and the topics to look at.
fn target(
    config: &HeraldConfig,
    group: &str,
    topics: &[String],
) -> anyhow::Result<(String, Vec<String>, Option<KnownGroup>)> {
    let known = resolve_group(config, group, topics)?;
    let topics: Vec<String> = if topics.is_empty() {
        known.as_ref().map(|g| g.topics.clone()).unwrap_or_default()
    } else {
        topics.iter().map(|t| resolve_topic(config, t)).collect()
    };
    let name = known.as_ref().map_or_else(|| group.to_owned(), |g| g.name.clone());
    Ok((name, topics, known))
}

/// What a reset does when the broker cannot say whether the group has running members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhenMembersUnknown {
    Refuse,
    /// `--force`: the operator stopped them.
    Proceed,
}

/// Why a group's offsets may not be moved now, if they may not: it has running members, or
/// the broker cannot tell and the operator did not say they stopped them.
fn refusal(
    description: &anyhow::Result<GroupDescription>,
    group: &str,
    known: Option<&KnownGroup>,
    unknown: WhenMembersUnknown,
) -> Option<String> {
    let stop = known.map_or_else(
        || "the processes that consume as this group".to_owned(),
        |g| {
            format!("every `{}` process (SIGTERM or Ctrl-C: they drain and commit first)", g.run_by)
        },
    );
    match description {
        Ok(d) if !d.members.is_empty() => {
            let members: Vec<String> =
                d.members.iter().map(|m| format!("{} at {}", m.client_id, m.host)).collect();
            Some(format!(
                "group {group} has {} running member(s) ({}): a running member goes on from its own position and overwrites a reset. Stop {stop}, then run this again",
                d.members.len(),
                members.join(", ")
            ))
        }
        Ok(_) => None,
        Err(_) if unknown == WhenMembersUnknown::Proceed => None,
        Err(e) => Some(format!(
            "cannot tell whether group {group} has running members ({e}). Stop {stop}, then run this again with --force"
        )),
    }
}

impl GroupsCommand {
    #[allow(clippy::print_stdout)]
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        let kafka = config.kafka.clone();
        match self {
            GroupsCommand::Describe { group } => {
                let (group, _, _) = target(config, &group, &[])?;
                let description =
                    tokio::task::spawn_blocking(move || describe(&kafka, &group)).await??;
                print!("{}", render_description(&description));
            }
            GroupsCommand::Lag { group, topic } => {
                let (group, topics, _) = target(config, &group, &topic)?;
                let rows =
                    tokio::task::spawn_blocking(move || lag(&kafka, &group, &topics)).await??;
                print!("{}", render(&rows));
            }
            GroupsCommand::ResetOffsets { group, to_datetime, topic, dry_run, force } => {
                let (group, topics, known) = target(config, &group, &topic)?;
                let at_ms = crate::dlq::parse_time(&to_datetime)?;
                let (probe_kafka, probe_group) = (kafka.clone(), group.clone());
                let description =
                    tokio::task::spawn_blocking(move || describe(&probe_kafka, &probe_group))
                        .await?;
                let unknown =
                    if force { WhenMembersUnknown::Proceed } else { WhenMembersUnknown::Refuse };
                let mode = ChangeMode::from_dry_run(dry_run);
                if let Some(reason) = refusal(&description, &group, known.as_ref(), unknown) {
                    if !mode.is_dry_run() {
                        anyhow::bail!(reason);
                    }
                    println!("note: {reason}");
                }
                let resets = tokio::task::spawn_blocking(move || {
                    reset_to_time(&kafka, &group, &topics, at_ms, mode)
                })
                .await??;
                print!("{}", render_resets(&resets, mode));
            }
        }
        Ok(())
    }
}
