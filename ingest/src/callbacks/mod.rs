//! Delivery reports that providers post back, verified by each provider's own scheme and
//! turned into `DeliveryEvent`s on `herald.events`, which the status sink stores.

pub mod sendgrid;
pub mod twilio;

use std::sync::OnceLock;

use herald_runtime::metrics;
use prometheus::IntCounterVec;

pub use crate::signatures::{SendgridVerifier, TwilioVerifier};
pub use twilio::NOTIFICATION_PARAM;

fn reports() -> &'static IntCounterVec {
    static REPORTS: OnceLock<IntCounterVec> = OnceLock::new();
    REPORTS.get_or_init(|| {
        metrics::counter_vec(
            "herald_callbacks_total",
            "Provider delivery reports by provider and outcome (recorded, ignored: an interim status, refused: bad signature or shape, unrecorded: the event could not be produced).",
            &["provider", "outcome"],
        )
    })
}

pub(crate) fn define_metrics() {
    let _ = reports();
}

fn count(provider: &str, outcome: &str) {
    reports().with_label_values(&[provider, outcome]).inc();
}
