//! `herald topics apply`: what it prints.

use std::fmt::Write as _;

use herald_runtime::kafka::ChangeMode;
use herald_runtime::kafka::apply::TopicChange;

/// One line per change, then a summary; a dry run words it as what would happen.
pub fn render_plan(plan: &[(String, Vec<TopicChange>)], mode: ChangeMode) -> String {
    let mut out = String::new();
    let mut changed = 0;
    let mut created = 0;
    for (topic, changes) in plan {
        if changes.iter().any(|c| matches!(c, TopicChange::Create { .. })) {
            created += 1;
        } else if changes.iter().any(|c| !matches!(c, TopicChange::Kept { .. })) {
            changed += 1;
        }
        for change in changes {
            let _ = writeln!(out, "{topic}: {change}");
        }
    }
    let unchanged = plan.len() - created - changed;
    let verb = if mode.is_dry_run() { "would be " } else { "" };
    let _ = writeln!(
        out,
        "{} topics: {created} {verb}created, {changed} {verb}changed, {unchanged} as defined",
        plan.len()
    );
    out
}

/// The topics `plan` would still change (create, grow or reconfigure): none once `herald
/// topics apply` ran with these definitions.
pub fn pending(plan: &[(String, Vec<TopicChange>)]) -> Vec<&str> {
    plan.iter()
        .filter(|(_, changes)| changes.iter().any(|c| !matches!(c, TopicChange::Kept { .. })))
        .map(|(topic, _)| topic.as_str())
        .collect()
}
