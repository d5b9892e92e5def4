//! The send API attacked from its own OpenAPI document: schemathesis (PyPI) generates
//! requests for every operation, the document allows or not, with a valid key and without,
//! and judges every answer: no server error, every status documented, every body of the
//! documented shape (so every 4xx carries a reason), what the document forbids refused,
//! what it allows accepted or refused with 422 and a reason per field
//! (`schemathesis.toml` beside this file says why 422 is allowed).

use std::path::Path;

use herald_testkit::schemathesis::{Attack, attack};

use crate::support::ApiEnv;

/// Examples per operation and phase.
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
    let run = Attack {
        document: format!("{}/openapi.json", api.api),
        key: &key,
        config: &config,
        examples: EXAMPLES,
        extra: &[],
    };
    let summary = tokio::task::block_in_place(|| attack(&python, &run, env.dir.path(), 300));
    api.stop().await;
    eprintln!("schemathesis: {summary}");
}
