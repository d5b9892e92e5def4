//! What `herald replay` puts on the records it re-drives, carried by every role onto the
//! records and events that follow from them, so that data teams can tell replayed traffic
//! apart and a forced resend reaches the dispatchers.

use herald_schemas::{DeliveryEvent, headers};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayMark {
    /// When the replay ran (ms since the epoch, as text).
    pub replayed_at: Option<String>,
    /// Set by `--force-resend`: one more delivery per resend id.
    pub resend_id: Option<String>,
}

impl ReplayMark {
    pub fn of(record: &OwnedMessage) -> Self {
        let value = |key: &str| {
            record.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == key)
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(str::to_owned)
            })
        };
        Self { replayed_at: value(headers::REPLAYED_AT), resend_id: value(headers::RESEND_ID) }
    }

    pub fn is_replay(&self) -> bool {
        self.replayed_at.is_some()
    }

    /// `headers` with the mark added.
    pub fn add_to(&self, mut headers: OwnedHeaders) -> OwnedHeaders {
        for (key, value) in self.pairs() {
            headers = headers.insert(Header { key, value: Some(value) });
        }
        headers
    }

    /// The mark in the event's details, where the status store keeps it.
    pub fn mark(&self, event: &mut DeliveryEvent) {
        for (key, value) in self.pairs() {
            let name = key.trim_start_matches("herald-").replace('-', "_");
            event.detail.insert(name, value.to_owned());
        }
    }

    /// The delivery ledger's id for this delivery: a forced resend is a delivery of its own.
    pub fn ledger_id(&self, notification_id: &str) -> String {
        match &self.resend_id {
            Some(resend) => format!("{notification_id}~resend:{resend}"),
            None => notification_id.to_owned(),
        }
    }

    fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [(headers::REPLAYED_AT, &self.replayed_at), (headers::RESEND_ID, &self.resend_id)]
            .into_iter()
            .filter_map(|(key, value)| value.as_deref().map(|v| (key, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn record(headers: OwnedHeaders) -> OwnedMessage {
        OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, Some(headers))
    }

    #[test]
    fn a_mark_travels_from_headers_to_headers_and_events() {
        let original = OwnedHeaders::new()
            .insert(Header { key: headers::REPLAYED_AT, value: Some("1700000000000") })
            .insert(Header { key: headers::RESEND_ID, value: Some("r1") });
        let mark = ReplayMark::of(&record(original));
        assert!(mark.is_replay());
        assert_eq!(ReplayMark::of(&record(mark.add_to(OwnedHeaders::new()))), mark);
        let mut event = DeliveryEvent::new("n1", herald_schemas::EventKind::Sent);
        mark.mark(&mut event);
        assert_eq!(event.detail.get("replayed_at").map(String::as_str), Some("1700000000000"));
        assert_eq!(event.detail.get("resend_id").map(String::as_str), Some("r1"));
        assert_eq!(mark.ledger_id("n1"), "n1~resend:r1");
        assert_eq!(ReplayMark::default().ledger_id("n1"), "n1", "not forced: the same delivery");
    }
}
