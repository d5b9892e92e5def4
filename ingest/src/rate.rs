//! Per-client request rates: a token bucket per API client holding one second's worth of
//! requests. Each ingest process keeps its own buckets; behind N instances a client gets up
//! to N times its rate, which `rate_per_second` should allow for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct ClientRates {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl ClientRates {
    /// Takes one request from `client`'s bucket, or says how long until one is available.
    pub(crate) fn admit(
        &self,
        client: &str,
        rate: Option<f64>,
        now: Instant,
    ) -> Result<(), Duration> {
        let Some(rate) = rate.filter(|r| *r > 0.0) else { return Ok(()) };
        let capacity = rate.max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets
            .entry(client.to_owned())
            .or_insert_with(|| Bucket { tokens: capacity, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_burst_is_one_seconds_worth_then_its_rate() {
        let rates = ClientRates::default();
        let start = Instant::now();
        for _ in 0..2 {
            assert!(rates.admit("a", Some(2.0), start).is_ok());
        }
        let wait = rates.admit("a", Some(2.0), start).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(rates.admit("b", Some(2.0), start).is_ok(), "buckets are per client");
        assert!(rates.admit("a", Some(2.0), start + Duration::from_millis(500)).is_ok());
        assert!(rates.admit("a", None, start).is_ok(), "no rate: no limit");
    }
}
