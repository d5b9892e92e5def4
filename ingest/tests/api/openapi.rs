//! The send API attacked from its own OpenAPI document: schemathesis (PyPI) generates
//! requests for every operation, the document allows or not, with a valid key and without,
//! and judges every answer: no server error, every status documented, every body of the
//! documented shape (so every 4xx carries a reason), what the document forbids refused,
//! what it allows accepted or refused with 422 and a reason per field
//! (`schemathesis.toml` beside this file says why 422 is allowed).

use std::path::Path;
use std::process::Command;

use crate::support::ApiEnv;

/// Examples per operation and phase; each run's seed is printed, and
/// `HERALD_SCHEMATHESIS_SEED` runs one again.
const EXAMPLES: &str = "40";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generated_request_gets_an_answer_the_openapi_document_allows_with_a_reason() {
    let Some(python) = herald_testkit::required("HERALD_TEST_PYTHON", "Python with schemathesis")
    else {
        return;
    };
    let env = ApiEnv::start().await;
    let api = env.serve().await;
    let key = env.api_key().await;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/schemathesis.toml");
    let mut command = Command::new(&python);
    command
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", api.api))
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--checks", "all", "--max-examples", EXAMPLES, "--no-color"])
        .current_dir(env.dir.path());
    if let Ok(seed) = std::env::var("HERALD_SCHEMATHESIS_SEED") {
        command.args(["--seed", &seed]);
    }
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
    api.stop().await;
    let report = String::from_utf8_lossy(&output.stdout);
    let summary = report.lines().rev().find(|l| l.contains(" generated")).unwrap_or_default();
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The run must have reached the API, not stopped at the document.
    let generated: usize = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no test-case count in:\n{report}"));
    assert!(generated >= 300, "only {generated} test cases:\n{report}");
    assert!(summary.contains(&format!("{generated} passed")), "{summary}");
    eprintln!("schemathesis: {summary}");
}
