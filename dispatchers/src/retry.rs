//! Retry tiers: a transiently failed delivery moves to `herald.retry.<channel>.<n>` with a due
//! time, and the dispatcher's consumer holds it (pausing only that tier's partition) until
//! then. After the last tier it goes to the dead-letter topic.

use std::time::Duration;

use herald_runtime::kafka::{Message, OwnedHeaders, OwnedMessage, header_str, headers_replacing};
use herald_schemas::headers;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    delays: Vec<Duration>,
}

/// Where a transiently failed delivery goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Retry { tier: u32, due_at: i64 },
    Exhausted,
}

impl RetryPolicy {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    pub fn tiers(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX)
    }

    /// After attempt `attempt` (1 = the first try) failed at `now`: attempt n's retry waits
    /// in tier n for that tier's delay, or longer if the provider asked for it.
    pub fn after_failure(&self, attempt: i32, now: i64, retry_after: Option<Duration>) -> NextStep {
        let Some(tier) = u32::try_from(attempt).ok().filter(|t| *t >= 1) else {
            return NextStep::Exhausted;
        };
        let Some(delay) = self.delays.get(tier as usize - 1) else {
            return NextStep::Exhausted;
        };
        let wait = retry_after.map_or(*delay, |asked| asked.max(*delay));
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        NextStep::Retry { tier, due_at: now.saturating_add(wait_ms) }
    }

    /// The tier a record waits in when it must wait without having failed (another process
    /// holds its delivery claim): the tier of its current attempt.
    pub fn tier_for_wait(&self, attempt: i32) -> u32 {
        u32::try_from(attempt).unwrap_or(1).clamp(1, self.tiers().max(1))
    }
}

/// Headers of the record's next stop: its own headers, the new attempt and due time, the
/// latest failure, and (set once, on the first failure) the first failure and where the
/// record came from.
pub fn retry_headers(
    record: &OwnedMessage,
    next_attempt: i32,
    due_at: i64,
    reason: &str,
) -> OwnedHeaders {
    const REPLACED: [&str; 4] =
        [headers::ATTEMPT, headers::DUE_AT, headers::ERROR_CLASS, headers::ERROR_REASON];
    let first_failure = header_str(record, headers::FIRST_FAILURE);
    let partition = record.partition().to_string();
    let offset = record.offset().to_string();
    let (attempt, due) = (next_attempt.to_string(), due_at.to_string());
    let mut set = vec![
        (headers::ATTEMPT, attempt.as_str()),
        (headers::DUE_AT, due.as_str()),
        (headers::ERROR_CLASS, "transient"),
        (headers::ERROR_REASON, reason),
    ];
    if first_failure.is_none() {
        set.push((headers::FIRST_FAILURE, reason));
    }
    if header_str(record, headers::ORIGINAL_TOPIC).is_none() {
        set.extend([
            (headers::ORIGINAL_TOPIC, record.topic()),
            (headers::ORIGINAL_PARTITION, partition.as_str()),
            (headers::ORIGINAL_OFFSET, offset.as_str()),
        ]);
    }
    headers_replacing(record, &REPLACED, &set)
}

#[cfg(test)]
mod tests {
    use herald_runtime::kafka::{Header, Headers, Timestamp};

    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn tiers_wait_their_delay_or_what_the_provider_asked() {
        let policy = RetryPolicy::new(vec![S(10), S(60)]);
        assert_eq!(
            policy.after_failure(1, 1_000, None),
            NextStep::Retry { tier: 1, due_at: 11_000 }
        );
        assert_eq!(
            policy.after_failure(2, 1_000, Some(S(5))),
            NextStep::Retry { tier: 2, due_at: 61_000 },
            "shorter Retry-After: the tier's delay"
        );
        assert_eq!(
            policy.after_failure(1, 1_000, Some(S(30))),
            NextStep::Retry { tier: 1, due_at: 31_000 },
            "longer Retry-After wins"
        );
        assert_eq!(policy.after_failure(3, 1_000, None), NextStep::Exhausted);
        assert_eq!(policy.tier_for_wait(7), 2);
    }

    #[test]
    fn retry_headers_keep_origin_and_first_failure() {
        let original = OwnedMessage::new(
            Some(b"v".to_vec()),
            Some(b"k".to_vec()),
            "herald.channel.email".into(),
            Timestamp::NotAvailable,
            3,
            42,
            Some(
                OwnedHeaders::new()
                    .insert(Header { key: headers::NOTIFICATION_ID, value: Some("n-1") }),
            ),
        );
        let first = retry_headers(&original, 2, 5_000, "451 try later");
        let in_tier_1 = OwnedMessage::new(
            None,
            None,
            "herald.retry.email.1".into(),
            Timestamp::NotAvailable,
            0,
            7,
            Some(first),
        );
        assert_eq!(herald_runtime::kafka::attempt(&in_tier_1), 2);
        let second = retry_headers(&in_tier_1, 3, 9_000, "timeout");
        let in_tier_2 = OwnedMessage::new(
            None,
            None,
            "herald.retry.email.2".into(),
            Timestamp::NotAvailable,
            0,
            1,
            Some(second),
        );
        let h = |name| header_str(&in_tier_2, name).map(str::to_owned);
        assert_eq!(h(headers::ATTEMPT).as_deref(), Some("3"));
        assert_eq!(h(headers::DUE_AT).as_deref(), Some("9000"));
        assert_eq!(h(headers::ERROR_REASON).as_deref(), Some("timeout"));
        assert_eq!(h(headers::FIRST_FAILURE).as_deref(), Some("451 try later"));
        assert_eq!(h(headers::ORIGINAL_TOPIC).as_deref(), Some("herald.channel.email"));
        assert_eq!(h(headers::ORIGINAL_PARTITION).as_deref(), Some("3"));
        assert_eq!(h(headers::ORIGINAL_OFFSET).as_deref(), Some("42"));
        assert_eq!(h(headers::NOTIFICATION_ID).as_deref(), Some("n-1"));
        let attempts =
            in_tier_2.headers().unwrap().iter().filter(|x| x.key == headers::ATTEMPT).count();
        assert_eq!(attempts, 1, "replaced, not repeated");
    }
}
