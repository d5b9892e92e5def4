//! Per-provider limits: a token bucket for the configured send rate, and a pause that a
//! provider's "slow down" (429 with Retry-After, APNs TooManyRequests) imposes on every send
//! to it, not only on the message that got the answer.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What every provider account is allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderLimits {
    /// Sends in progress at once.
    pub concurrency: usize,
    /// Sends per second (unset: no limit beyond what the provider answers with 429s).
    pub rate_per_second: Option<f64>,
    pub timeout_ms: u64,
    /// After this many transient failures in a row the provider is skipped in favour of the
    /// route's next one, for `breaker_open_ms`; then one send probes it again.
    pub breaker_failures: u32,
    pub breaker_open_ms: u64,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        Self {
            concurrency: 64,
            rate_per_second: None,
            timeout_ms: 10_000,
            breaker_failures: 5,
            breaker_open_ms: 30_000,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
}

/// Sends per second, with a burst of one second's worth; `None` rate means unlimited.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: Option<f64>,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    pub fn new(per_second: Option<f64>) -> Self {
        let per_second = per_second.filter(|r| *r > 0.0);
        let bucket = Bucket {
            tokens: per_second.unwrap_or(0.0),
            refilled: Instant::now(),
            paused_until: None,
        };
        Self { per_second, bucket: Mutex::new(bucket) }
    }

    /// Waits until a send is allowed, then takes it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                if let Some(until) = b.paused_until.filter(|u| *u > now) {
                    until - now
                } else if let Some(rate) = self.per_second {
                    let elapsed = now.duration_since(b.refilled).as_secs_f64();
                    b.tokens = (b.tokens + elapsed * rate).min(rate.max(1.0));
                    b.refilled = now;
                    if b.tokens >= 1.0 {
                        b.tokens -= 1.0;
                        return;
                    }
                    Duration::from_secs_f64((1.0 - b.tokens) / rate)
                } else {
                    return;
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds every send back for `duration` (the provider asked to slow down).
    pub fn pause_for(&self, duration: Duration) {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + duration;
        b.paused_until = Some(b.paused_until.map_or(until, |u| u.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_is_kept_and_pauses_hold_everyone() {
        let limiter = RateLimiter::new(Some(10.0));
        let start = Instant::now();
        for _ in 0..30 {
            limiter.acquire().await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1_900) && took < Duration::from_millis(2_100),
            "{took:?}"
        );

        limiter.pause_for(Duration::from_secs(5));
        let paused = Instant::now();
        limiter.acquire().await;
        assert!(paused.elapsed() >= Duration::from_secs(5));

        let unlimited = RateLimiter::new(None);
        let start = Instant::now();
        for _ in 0..1000 {
            unlimited.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
