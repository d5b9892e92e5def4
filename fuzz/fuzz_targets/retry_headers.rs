//! Any headers on a record in a retry tier (`herald-attempt`, `herald-due-at`, repeated,
//! empty, not UTF-8, not numbers, among others): read as an attempt of at least 1 and a due
//! time or none, never a panic; the headers written for the next tier carry exactly one
//! attempt and one due time, the ones set, and every other header unchanged.
#![no_main]

use herald_runtime::kafka::{
    Header, Headers, Message, OwnedHeaders, OwnedMessage, Timestamp, attempt, due_at,
    headers_replacing,
};
use herald_schemas::headers;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 4] = [headers::ATTEMPT, headers::DUE_AT, headers::ERROR_REASON, "x-other"];

fuzz_target!(|data: &[u8]| {
    // Each header: a byte choosing its name, then its value up to the next 0xFF.
    let mut h = OwnedHeaders::new();
    let mut others = 0;
    for chunk in data.split(|b| *b == 0xFF).filter(|c| !c.is_empty()) {
        let key = NAMES[usize::from(chunk[0]) % NAMES.len()];
        let value = (chunk[0] & 0x80 == 0).then_some(&chunk[1..]);
        if key != headers::ATTEMPT && key != headers::DUE_AT {
            others += 1;
        }
        h = h.insert(Header { key, value });
    }
    let record = OwnedMessage::new(
        None,
        None,
        "herald.retry.sms.1".into(),
        Timestamp::NotAvailable,
        0,
        0,
        Some(h),
    );
    let current = attempt(&record);
    assert!(current >= 1);
    let _ = due_at(&record);

    let next = current.saturating_add(1).to_string();
    let out = headers_replacing(
        &record,
        &[headers::ATTEMPT, headers::DUE_AT],
        &[(headers::ATTEMPT, &next), (headers::DUE_AT, "1700000000000")],
    );
    let count = |name: &str| out.iter().filter(|x| x.key == name).count();
    assert_eq!(count(headers::ATTEMPT), 1);
    assert_eq!(count(headers::DUE_AT), 1);
    assert_eq!(out.count(), others + 2);
    let moved = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, Some(out));
    assert_eq!(attempt(&moved), current.saturating_add(1));
    assert_eq!(due_at(&moved), Some(1_700_000_000_000));
    assert!(moved.headers().is_some());
});
