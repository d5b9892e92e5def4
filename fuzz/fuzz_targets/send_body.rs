//! Any body posted to `POST /v1/notifications`, through parsing and validation: a request to
//! produce or field errors with reasons, never a panic.
#![no_main]

use herald_ingest::request::{Limits, SendBody, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<SendBody>(data) else { return };
    let limits = Limits { max_recipients: 100, max_schedule_ms: 30 * 86_400_000 };
    match validate(body, limits, "fuzz-notification", "fuzz-client") {
        Ok(requests) => assert!(!requests.is_empty(), "an accepted body has a recipient"),
        Err(errors) => assert!(errors.iter().all(|e| !e.reason.is_empty()), "{errors:?}"),
    }
});
