//! Scheduled requests: a request with `send_at` in the future waits in the delay tiers
//! (`herald.delay.*`, each a fixed wait, so a partition's records come due in order) and
//! hops to shorter tiers as its time nears; within the shortest tier of its time it goes to
//! `herald.requests`. Waiting is the consumer runtime's due gate pausing one partition,
//! never a sleep in a handler, and never in front of unscheduled traffic.

use std::sync::Arc;

use herald_runtime::kafka::{
    DeadLetters, Handler, HandlerError, Message, OwnedMessage, Producer, headers_replacing,
};
use herald_schemas::{AvroCodec, NotificationRequest, Topics, headers};

pub(crate) struct Scheduler {
    codec: Arc<AvroCodec>,
    producer: Producer,
    dead_letters: DeadLetters,
    topics: Topics,
}

impl Scheduler {
    pub(crate) fn new(
        codec: Arc<AvroCodec>,
        producer: Producer,
        dead_letters: DeadLetters,
        topics: Topics,
    ) -> Self {
        Self { codec, producer, dead_letters, topics }
    }
}

impl Handler for Scheduler {
    async fn handle(&self, record: &OwnedMessage) -> Result<(), HandlerError> {
        let decoded = self
            .dead_letters
            .decode_or_dead_letter::<NotificationRequest>(&self.codec, record)
            .await?;
        let Some(request) = decoded else { return Ok(()) };
        let now = herald_schemas::now_millis();
        let (topic, due_at) =
            self.topics.next_stop(request.send_at.unwrap_or(now), request.lane(), now);
        let due = due_at.map(|at| at.to_string());
        let set: Vec<_> = due.iter().map(|due| (headers::DUE_AT, due.as_str())).collect();
        let onward = headers_replacing(record, &[headers::DUE_AT], &set);
        let payload = record.payload().unwrap_or_default();
        self.producer
            .send(&topic, record.key(), payload, Some(onward))
            .await
            .map(drop)
            .map_err(HandlerError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_schemas::Lane;

    #[test]
    fn a_request_hops_down_the_tiers_and_leaves_within_a_second_of_its_time() {
        let topics = Topics::default();
        let at = 1_000_000;
        let next_stop =
            |topics: &Topics, (send_at, lane), now| topics.next_stop(send_at, lane, now);
        let urgent = |send_at| (send_at, Lane::Urgent);
        assert_eq!(
            next_stop(&topics, urgent(at + 90_000), at),
            ("herald.delay.1m".into(), Some(at + 60_000))
        );
        assert_eq!(
            next_stop(&topics, urgent(at + 5_500), at),
            ("herald.delay.1s".into(), Some(at + 1_000))
        );
        assert_eq!(
            next_stop(&topics, urgent(at + 400), at),
            ("herald.delay.1s".into(), Some(at + 400))
        );
        assert_eq!(next_stop(&topics, urgent(at), at), ("herald.requests".into(), None));
        assert_eq!(
            next_stop(&topics, urgent(at - 5), at),
            ("herald.requests".into(), None),
            "late: now"
        );
        assert_eq!(
            next_stop(&topics, (at, Lane::Bulk), at),
            ("herald.requests.bulk".into(), None),
            "released into its lane"
        );
    }
}
