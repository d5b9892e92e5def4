//! Ingest's end of email open and click tracking: `/t/o/{token}` (the pixel) and
//! `/t/c/{token}` (a link). A token that verifies becomes an `opened` or `clicked` event;
//! one that does not is a 404, so no link can be made to redirect anywhere its email did not
//! point.

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_runtime::metrics;
use herald_runtime::tracking::Tracked;
use herald_schemas::{DeliveryEvent, EventKind};
use prometheus::IntCounterVec;

use crate::state::Shared;

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

fn hits() -> &'static IntCounterVec {
    static HITS: OnceLock<IntCounterVec> = OnceLock::new();
    HITS.get_or_init(|| {
        metrics::counter_vec(
            "herald_tracking_requests_total",
            "Open pixel and tracked link requests by kind (open, click) and outcome (recorded, unrecorded: the event could not be produced, refused: not a valid token).",
            &["kind", "outcome"],
        )
    })
}

pub(crate) fn define_metrics() {
    let _ = hits();
}

fn refused(kind: &str) -> Response {
    hits().with_label_values(&[kind, "refused"]).inc();
    (StatusCode::NOT_FOUND, "unknown link").into_response()
}

/// Verifies `token` as a token for `kind`: opens carry no destination, clicks one.
fn verify(shared: &Shared, token: &str, kind: EventKind) -> Option<Tracked> {
    let tracked = shared.tracker.as_ref()?.verify(token)?;
    (tracked.url.is_some() == (kind == EventKind::Clicked)).then_some(tracked)
}

/// Produces the event; a failure is logged, not shown: the reader's click still works.
async fn record(shared: &Shared, tracked: &Tracked, kind: EventKind) {
    let mut event = DeliveryEvent::new(&tracked.notification_id, kind);
    event.channel = Some("email".into());
    event.target = Some(tracked.target.clone());
    if let Some(url) = &tracked.url {
        event.detail.insert("url".into(), url.clone());
    }
    let label = if kind == EventKind::Opened { "open" } else { "click" };
    let produced = shared.emit(&event).await;
    let outcome = match produced {
        Ok(()) => "recorded",
        Err(error) => {
            tracing::warn!(%error, kind = label, "tracking event not produced");
            "unrecorded"
        }
    };
    hits().with_label_values(&[label, outcome]).inc();
}

pub(crate) async fn opened(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
) -> Response {
    let Some(tracked) = verify(&shared, &token, EventKind::Opened) else { return refused("open") };
    record(&shared, &tracked, EventKind::Opened).await;
    let headers = [(header::CONTENT_TYPE, "image/gif"), (header::CACHE_CONTROL, "no-store")];
    (headers, PIXEL).into_response()
}

pub(crate) async fn clicked(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
) -> Response {
    let Some(tracked) = verify(&shared, &token, EventKind::Clicked) else {
        return refused("click");
    };
    record(&shared, &tracked, EventKind::Clicked).await;
    let Some(url) = tracked.url else { return refused("click") };
    let headers = [(header::LOCATION, url), (header::CACHE_CONTROL, "no-store".to_owned())];
    (StatusCode::FOUND, headers).into_response()
}
