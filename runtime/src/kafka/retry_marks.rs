//! What a record's headers say about its retries: the attempt it is on and when it is due.
//! Anyone can produce to a retry topic, so a header that is absent, repeated, not UTF-8 or
//! not a number is read as if it were absent, never trusted to mean something else.

use rdkafka::message::Message;

use super::header_str;
use herald_schemas::headers;

/// The delivery attempt `record` is on (`herald-attempt`): 1 on a first try, n + 1 after n
/// failures; 1 when the header is absent or not a positive number.
pub fn attempt(record: &impl Message) -> i32 {
    header_str(record, headers::ATTEMPT)
        .and_then(|a| a.trim().parse().ok())
        .filter(|a| *a >= 1)
        .unwrap_or(1)
}

/// When `record` may be handled (`herald-due-at`, ms since the epoch); `None` (handle it
/// now) when the header is absent or not a number.
pub fn due_at(record: &impl Message) -> Option<i64> {
    header_str(record, headers::DUE_AT)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

    use super::*;

    fn record(pairs: &[(&str, &[u8])]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for &(key, value) in pairs {
            h = h.insert(Header { key, value: Some(value) });
        }
        OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, Some(h))
    }

    #[test]
    fn an_unreadable_attempt_is_the_first_and_an_unreadable_due_time_is_now() {
        assert_eq!(attempt(&record(&[])), 1);
        assert_eq!(attempt(&record(&[(headers::ATTEMPT, b"3")])), 3);
        for bad in [&b"0"[..], b"-4", b"three", b"\xff", b"99999999999"] {
            assert_eq!(attempt(&record(&[(headers::ATTEMPT, bad)])), 1, "{bad:?}");
        }
        assert_eq!(
            due_at(&record(&[(headers::DUE_AT, b"1700000000000")])),
            Some(1_700_000_000_000)
        );
        assert_eq!(due_at(&record(&[(headers::DUE_AT, b"soon")])), None);
        assert_eq!(due_at(&record(&[])), None);
    }
}
