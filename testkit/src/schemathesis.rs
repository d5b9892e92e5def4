//! schemathesis (PyPI) attacking one of Herald's HTTP APIs from its own OpenAPI document:
//! requests for every operation, the document allows or not, with a valid key and without,
//! every answer judged (no server error, every status documented, every body of the
//! documented shape, what the document forbids refused, what it allows accepted or refused
//! with a reason). Each run's seed is printed; `HERALD_SCHEMATHESIS_SEED` runs one again.
#![allow(clippy::panic, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

/// One run: the document's URL, the key to call with, the run's configuration file (what
/// the document cannot say), examples per operation and phase, and extra arguments (a tag
/// to keep to).
#[derive(Debug)]
pub struct Attack<'a> {
    pub document: String,
    pub key: &'a str,
    pub config: &'a Path,
    pub examples: &'a str,
    pub extra: &'a [&'a str],
}

/// Runs `attack` with `python` (which has schemathesis) in `dir`: how many test cases it
/// generated, every one passed. Panics with schemathesis's report when any failed, or when
/// it stopped short of `at_least` cases (it must have reached the API, not stopped at the
/// document).
pub fn attack(python: &str, attack: &Attack<'_>, dir: &Path, at_least: usize) -> String {
    let mut command = Command::new(python);
    command
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(attack.config)
        .arg("run")
        .arg(&attack.document)
        .args(attack.extra)
        .args(["--header", &format!("Authorization: Bearer {}", attack.key)])
        .args(["--checks", "all", "--max-examples", attack.examples, "--no-color"])
        .current_dir(dir);
    if let Ok(seed) = std::env::var("HERALD_SCHEMATHESIS_SEED") {
        command.args(["--seed", &seed]);
    }
    let output = command.output().expect("schemathesis runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = report.lines().rev().find(|l| l.contains(" generated")).unwrap_or_default();
    let generated: usize = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no test-case count in:\n{report}"));
    assert!(generated >= at_least, "only {generated} test cases:\n{report}");
    assert!(summary.contains(&format!("{generated} passed")), "{summary}");
    summary.to_owned()
}
