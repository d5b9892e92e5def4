//! Records that must not be handled before a due time (retry tiers carry a `herald-due-at`
//! header). The head record of a partition that is not due yet is held here and its
//! partition paused: nothing sleeps in a handler, and other partitions (the main channel
//! topic, other tiers) keep flowing. When the head is due it is dispatched and the partition
//! resumed. Records behind a held head wait with it, so a partition's order holds.

use std::collections::{HashMap, VecDeque};

use rdkafka::message::{Message, OwnedMessage};

use super::TopicPartition;
use crate::kafka::due_at;

#[derive(Debug)]
pub(super) enum Admission {
    /// Handle it now.
    Dispatch(OwnedMessage),
    /// Held; the partition must be paused until [`DueGate::release`] says otherwise.
    HeldPause(TopicPartition),
    /// Held behind an earlier held record (its partition is already paused).
    Held,
}

#[derive(Debug, Default)]
pub(super) struct DueGate {
    held: HashMap<TopicPartition, VecDeque<OwnedMessage>>,
}

impl DueGate {
    pub(super) fn admit(&mut self, message: OwnedMessage, now: i64) -> Admission {
        let tp = (message.topic().to_owned(), message.partition());
        if let Some(queue) = self.held.get_mut(&tp) {
            queue.push_back(message);
            return Admission::Held;
        }
        match due_at(&message) {
            Some(due) if due > now => {
                self.held.insert(tp.clone(), VecDeque::from([message]));
                Admission::HeldPause(tp)
            }
            _ => Admission::Dispatch(message),
        }
    }

    /// Takes every held record that is due, in order, and the partitions that have nothing
    /// held any more (to resume).
    pub(super) fn release(&mut self, now: i64) -> (Vec<OwnedMessage>, Vec<TopicPartition>) {
        let mut due = Vec::new();
        let mut resume = Vec::new();
        self.held.retain(|tp, queue| {
            while queue.front().is_some_and(|m| due_at(m).is_none_or(|d| d <= now)) {
                if let Some(message) = queue.pop_front() {
                    due.push(message);
                }
            }
            if queue.is_empty() {
                resume.push(tp.clone());
                false
            } else {
                true
            }
        });
        (due, resume)
    }

    /// Forgets what is held for partitions this member no longer owns.
    pub(super) fn forget(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.held.remove(tp);
        }
    }

    pub(super) fn is_holding(&self, tp: &TopicPartition) -> bool {
        self.held.contains_key(tp)
    }

    pub(super) fn held_count(&self) -> usize {
        self.held.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use herald_schemas::headers;
    use rdkafka::Timestamp;
    use rdkafka::message::{Header, OwnedHeaders};

    use super::*;

    fn record(partition: i32, offset: i64, due: Option<i64>) -> OwnedMessage {
        let headers = due.map(|d| {
            OwnedHeaders::new().insert(Header { key: headers::DUE_AT, value: Some(&d.to_string()) })
        });
        OwnedMessage::new(
            None,
            None,
            "retry".into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            headers,
        )
    }

    fn offsets(messages: &[OwnedMessage]) -> Vec<i64> {
        messages.iter().map(Message::offset).collect()
    }

    #[test]
    fn not_due_head_holds_its_partition_in_order_and_others_flow() {
        let mut gate = DueGate::default();
        assert!(
            matches!(gate.admit(record(0, 1, Some(40)), 50), Admission::Dispatch(_)),
            "due already"
        );
        assert!(
            matches!(gate.admit(record(0, 2, None), 50), Admission::Dispatch(_)),
            "no due time"
        );
        let held = gate.admit(record(0, 3, Some(200)), 50);
        assert!(
            matches!(&held, Admission::HeldPause(tp) if *tp == ("retry".to_owned(), 0)),
            "{held:?}"
        );
        assert!(
            matches!(gate.admit(record(0, 4, Some(60)), 50), Admission::Held),
            "behind the held head"
        );
        assert!(
            matches!(gate.admit(record(1, 9, None), 50), Admission::Dispatch(_)),
            "other partition flows"
        );

        let (due, resume) = gate.release(150);
        assert!(due.is_empty() && resume.is_empty(), "head not due at 150");
        let (due, resume) = gate.release(200);
        assert_eq!(offsets(&due), [3, 4], "head and what waited behind it, in order");
        assert_eq!(resume, [("retry".to_owned(), 0)]);
        assert_eq!(gate.held_count(), 0);
    }

    /// One step of a property run: a record arrives (partition, due time or none) or the
    /// gate is asked what it may release; time moves on by `advance` first.
    #[derive(Debug, Clone)]
    enum Step {
        Arrive { partition: i32, due: Option<i64>, advance: i64 },
        Release { advance: i64 },
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (0..3i32, proptest::option::of(0..500i64), 0..40i64)
                .prop_map(|(partition, due, advance)| Step::Arrive { partition, due, advance }),
            (0..80i64).prop_map(|advance| Step::Release { advance }),
        ]
    }

    proptest::proptest! {
        /// Whatever arrives when, no record leaves the gate before it is due, each
        /// partition's records leave in offset order, and all leave once all are due.
        #[test]
        fn no_record_is_released_before_it_is_due_and_each_partition_keeps_its_order(
            steps in proptest::collection::vec(step(), 1..120),
        ) {
            let mut gate = DueGate::default();
            let mut now = 0;
            let mut next_offset = [0i64; 3];
            let mut arrived = 0;
            let mut left: Vec<(OwnedMessage, i64)> = Vec::new();
            for step in steps {
                match step {
                    Step::Arrive { partition, due, advance } => {
                        now += advance;
                        let slot = usize::try_from(partition).unwrap_or_default();
                        let offset = next_offset[slot];
                        next_offset[slot] += 1;
                        arrived += 1;
                        if let Admission::Dispatch(m) = gate.admit(record(partition, offset, due), now) {
                            left.push((m, now));
                        }
                    }
                    Step::Release { advance } => {
                        now += advance;
                        let (due, _) = gate.release(now);
                        left.extend(due.into_iter().map(|m| (m, now)));
                    }
                }
            }
            let (rest, _) = gate.release(i64::MAX);
            left.extend(rest.into_iter().map(|m| (m, i64::MAX)));
            proptest::prop_assert_eq!(left.len(), arrived, "every record leaves");
            proptest::prop_assert_eq!(gate.held_count(), 0);
            let mut last = [-1i64; 3];
            for (message, at) in &left {
                let due = due_at(message).unwrap_or(i64::MIN);
                proptest::prop_assert!(due <= *at, "offset {} due {due} left at {at}", message.offset());
                let slot = usize::try_from(message.partition()).unwrap_or_default();
                proptest::prop_assert!(message.offset() > last[slot], "order of partition {slot}");
                last[slot] = message.offset();
            }
        }
    }

    #[test]
    fn release_stops_at_the_next_record_not_due() {
        let mut gate = DueGate::default();
        gate.admit(record(0, 1, Some(100)), 0);
        gate.admit(record(0, 2, Some(300)), 0);
        let (due, resume) = gate.release(100);
        assert_eq!(offsets(&due), [1]);
        assert!(resume.is_empty(), "still held: offset 2");
        assert!(gate.is_holding(&("retry".into(), 0)));
        gate.forget(&[("retry".into(), 0)]);
        assert_eq!(gate.held_count(), 0);
    }
}
