//! A provider's circuit breaker: after `threshold` transient failures in a row the provider
//! is taken out of its routes for a window; when the window ends one send (and only one)
//! probes it. A probe that fails reopens the window at once; one that succeeds closes it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use prometheus::IntCounterVec;

/// `open_until` of a closed breaker.
const CLOSED: i64 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The provider is healthy.
    Closed,
    /// The provider is out of its routes; this send is the one that checks on it.
    Probe,
    Refused,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    open_for_ms: i64,
    failures: AtomicU32,
    /// Until when (ms) sends are refused; `CLOSED` when they are not.
    open_until: AtomicI64,
}

fn opened_total() -> &'static IntCounterVec {
    static METRIC: OnceLock<IntCounterVec> = OnceLock::new();
    METRIC.get_or_init(|| {
        herald_runtime::metrics::counter_vec(
            "herald_provider_breaker_opened_total",
            "Times a provider was taken out of its routes for failing again and again.",
            &["provider"],
        )
    })
}

pub(crate) fn define_metrics() {
    let _ = opened_total();
}

impl Breaker {
    /// `threshold` 0 never opens.
    pub(crate) fn new(threshold: u32, open_for_ms: u64) -> Self {
        Self {
            threshold,
            open_for_ms: i64::try_from(open_for_ms).unwrap_or(i64::MAX),
            failures: AtomicU32::new(0),
            open_until: AtomicI64::new(CLOSED),
        }
    }

    /// Whether a send may go to the provider now. Once the window has ended the first caller
    /// is admitted as the probe, and the window is re-armed for everyone else until the
    /// probe's outcome is recorded.
    pub(crate) fn admit(&self, now: i64) -> Admission {
        let until = self.open_until.load(Ordering::Acquire);
        if until == CLOSED {
            return Admission::Closed;
        }
        if until > now {
            return Admission::Refused;
        }
        let rearmed = now.saturating_add(self.open_for_ms);
        match self.open_until.compare_exchange(until, rearmed, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Admission::Probe,
            Err(_) => Admission::Refused,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.open_until.load(Ordering::Acquire) == CLOSED
    }

    /// When the provider may be tried again (`CLOSED`: now).
    pub(crate) fn open_until(&self) -> i64 {
        self.open_until.load(Ordering::Acquire)
    }

    pub(crate) fn record(&self, provider: &str, transient: bool, now: i64) {
        if !transient {
            self.failures.store(0, Ordering::Release);
            self.open_until.store(CLOSED, Ordering::Release);
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if self.threshold == 0 || failures < self.threshold {
            return;
        }
        // Stays one failure from the threshold: a failed probe reopens at once.
        self.failures.store(self.threshold - 1, Ordering::Release);
        let was = self.open_until.swap(now.saturating_add(self.open_for_ms), Ordering::AcqRel);
        if was == CLOSED {
            opened_total().with_label_values(&[provider]).inc();
            tracing::warn!(
                provider,
                failures,
                open_for_ms = self.open_for_ms,
                "provider keeps failing: its routes use their next provider, or hold their records, for a while"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_admits_one_probe_per_window() {
        let breaker = Breaker::new(2, 1_000);
        assert_eq!(breaker.admit(0), Admission::Closed);
        breaker.record("p", true, 0);
        assert_eq!(breaker.admit(10), Admission::Closed, "one failure is not enough");
        breaker.record("p", true, 10);
        assert_eq!(breaker.admit(20), Admission::Refused, "open");
        assert_eq!(breaker.admit(1_009), Admission::Refused);
        assert_eq!(breaker.admit(1_010), Admission::Probe, "the window ended: a probe");
        assert_eq!(breaker.admit(1_011), Admission::Refused, "only one probe");
        breaker.record("p", true, 1_020);
        assert_eq!(breaker.admit(1_500), Admission::Refused, "the failed probe reopened it");
        assert_eq!(breaker.admit(2_020), Admission::Probe);
        breaker.record("p", false, 2_030);
        assert!(breaker.is_closed(), "a good probe closes it");
        assert_eq!(breaker.admit(2_032), Admission::Closed);
        breaker.record("p", true, 2_040);
        assert_eq!(breaker.admit(2_041), Admission::Closed, "closed again: the count starts over");
    }

    #[test]
    fn success_in_between_resets_the_count_and_zero_never_opens() {
        let breaker = Breaker::new(2, 1_000);
        breaker.record("p", true, 0);
        breaker.record("p", false, 1);
        breaker.record("p", true, 2);
        assert_eq!(breaker.admit(3), Admission::Closed);
        let never = Breaker::new(0, 1_000);
        for t in 0..10 {
            never.record("p", true, t);
        }
        assert_eq!(never.admit(11), Admission::Closed);
    }
}
