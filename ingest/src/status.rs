//! The status store ingest owns: every `DeliveryEvent` of a notification (fed by the status
//! sink from `herald.events`, and by the API itself at acceptance), and the status computed
//! from them for `GET /v1/notifications/{id}`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use herald_runtime::sqlite::SqliteError;
use herald_schemas::{DeliveryEvent, EventKind};
use serde::Serialize;

use crate::store::{
    AnyIngestStore, EventRow, ScyllaIngestStore, SqliteIngestStore, StatusRecords as _, StoreError,
};

/// The most notifications one page of a user's list holds.
pub const MAX_PAGE: usize = 100;

#[derive(Debug, Clone)]
pub struct StatusStore {
    backend: AnyIngestStore,
}

/// One event as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub kind: &'static str,
    pub at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempt: i32,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, String>,
}

/// Where one (channel, target) delivery stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub channel: String,
    pub target: String,
    pub state: &'static str,
    pub attempt: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NotificationStatus {
    pub id: String,
    /// accepted, in_progress, sent, delivered, failed, partially_failed or skipped.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<i64>,
    pub deliveries: Vec<DeliveryView>,
    pub skipped: Vec<EventView>,
    /// Why it failed before any delivery was made (a template it could not render), when it
    /// did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub events: Vec<EventView>,
    /// The API client that sent it, when known: only it may read the status.
    #[serde(skip)]
    pub client_id: Option<String>,
}

/// One notification in a user's list: where it stands, without its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NotificationSummary {
    pub id: String,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<i64>,
    pub deliveries: Vec<DeliveryView>,
    /// The reasons of its skips (opted_out, no_device, ...).
    pub skipped: Vec<String>,
}

/// A page of a user's notifications, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NotificationPage {
    pub notifications: Vec<NotificationSummary>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

impl From<NotificationStatus> for NotificationSummary {
    fn from(status: NotificationStatus) -> Self {
        Self {
            id: status.id,
            state: status.state,
            accepted_at: status.accepted_at,
            deliveries: status.deliveries,
            skipped: status.skipped.into_iter().filter_map(|e| e.reason).collect(),
        }
    }
}

/// Later states win over earlier ones regardless of arrival order (events of one
/// notification come from several roles).
fn rank(kind: EventKind) -> u8 {
    match kind {
        EventKind::Routed => 1,
        EventKind::Retrying => 2,
        EventKind::Sent => 3,
        EventKind::Delivered => 4,
        // A click implies the open, whichever event arrives first.
        EventKind::Opened => 5,
        EventKind::Clicked => 6,
        EventKind::Failed | EventKind::DeadLettered => 7,
        _ => 0,
    }
}

fn kind_of(name: &str) -> EventKind {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).unwrap_or(EventKind::Unknown)
}

impl From<EventRow> for EventView {
    fn from(row: EventRow) -> Self {
        Self {
            kind: kind_of(&row.kind).as_str(),
            at: row.occurred_at,
            channel: row.channel,
            target: row.target,
            user_id: row.user_id,
            provider: row.provider,
            reason: row.reason,
            attempt: row.attempt.unwrap_or_default(),
            detail: row.detail.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default(),
        }
    }
}

impl StatusStore {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SqliteError> {
        Ok(Self { backend: AnyIngestStore::Sqlite(SqliteIngestStore::open(path, 0)?) })
    }

    pub fn on_scylla(store: Arc<ScyllaIngestStore>) -> Self {
        Self { backend: AnyIngestStore::Scylla(store) }
    }

    /// Stores events; an event seen before (same event id) is ignored, so redelivery and
    /// replay of `herald.events` are harmless.
    pub async fn record(&self, events: Vec<DeliveryEvent>) -> Result<(), StoreError> {
        self.backend.record(events).await
    }

    /// The status of `notification_id`, or `None` if no event of it is known.
    pub async fn status(
        &self,
        notification_id: &str,
    ) -> Result<Option<NotificationStatus>, StoreError> {
        let rows = self.backend.events(notification_id).await?;
        let rows: Vec<EventView> = rows.into_iter().map(EventView::from).collect();
        Ok((!rows.is_empty()).then(|| summarize(notification_id, rows)))
    }

    /// Erases the events that name `user_id` (and those naming no one of notifications only
    /// they received); how many.
    pub async fn erase_user(&self, user_id: &str) -> Result<u64, StoreError> {
        self.backend.erase_user(user_id).await
    }

    /// The API client that sent `notification_id`, if an API client did.
    pub async fn client_of(&self, notification_id: &str) -> Result<Option<String>, StoreError> {
        self.backend.client_of(notification_id).await
    }

    /// The notifications `client_id` sent to `user_id` and accepted before `before` (ms),
    /// newest first, at most `limit`.
    pub async fn for_user(
        &self,
        user_id: &str,
        client_id: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<NotificationPage, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let before = before.unwrap_or(i64::MAX);
        // One more than asked: whether there is a next page.
        let fetch = limit + 1;
        let fetch = i32::try_from(fetch).unwrap_or(i32::MAX);
        let ids = self.backend.user_page((user_id, client_id), before, fetch).await?;
        let next_before =
            if ids.len() > limit { ids.get(limit - 1).map(|(_, at)| *at) } else { None };
        let mut notifications = Vec::with_capacity(limit);
        for (id, _) in ids.into_iter().take(limit) {
            // ScyllaDB indexes each `accepted` event: a notification produced again after a
            // crash (same id) is listed once.
            if notifications.iter().any(|n: &NotificationSummary| n.id == id) {
                continue;
            }
            if let Some(status) = self.status(&id).await? {
                notifications.push(status.into());
            }
        }
        Ok(NotificationPage { notifications, next_before })
    }
}

fn summarize(id: &str, events: Vec<EventView>) -> NotificationStatus {
    let mut deliveries: HashMap<(String, String), DeliveryView> = HashMap::new();
    let mut skipped = Vec::new();
    let mut accepted_at = None;
    let mut client_id = None;
    // A failure of the whole notification, before the fan-out, names no delivery.
    let mut failed_before_fanout = None;
    for event in &events {
        let kind = kind_of(event.kind);
        match kind {
            EventKind::Failed if event.channel.is_none() && event.target.is_none() => {
                let detail = event.detail.get("error");
                let reason = event.reason.as_deref().unwrap_or("failed");
                failed_before_fanout =
                    Some(detail.map_or_else(|| reason.to_owned(), |d| format!("{reason}: {d}")));
            }
            EventKind::Accepted => {
                accepted_at = Some(accepted_at.map_or(event.at, |at: i64| at.min(event.at)));
                client_id = client_id.or_else(|| event.detail.get("client_id").cloned());
            }
            EventKind::Skipped => skipped.push(event.clone()),
            _ if rank(kind) > 0 => {
                let (Some(channel), Some(target)) = (&event.channel, &event.target) else {
                    continue;
                };
                let view = DeliveryView {
                    channel: channel.clone(),
                    target: target.clone(),
                    state: event.kind,
                    attempt: event.attempt,
                    provider: event.provider.clone(),
                    reason: event.reason.clone(),
                    updated_at: event.at,
                };
                let slot = deliveries
                    .entry((channel.clone(), target.clone()))
                    .or_insert_with(|| view.clone());
                let newer = (rank(kind), event.at) >= (rank(kind_of(slot.state)), slot.updated_at);
                if newer {
                    *slot = view;
                }
            }
            _ => {}
        }
    }
    let mut deliveries: Vec<DeliveryView> = deliveries.into_values().collect();
    deliveries.sort_by(|a, b| (&a.channel, &a.target).cmp(&(&b.channel, &b.target)));
    let state = match &failed_before_fanout {
        Some(_) if deliveries.is_empty() => "failed",
        _ => overall(&deliveries, !skipped.is_empty()),
    };
    NotificationStatus {
        id: id.to_owned(),
        state,
        accepted_at,
        deliveries,
        skipped,
        reason: failed_before_fanout,
        events,
        client_id,
    }
}

fn overall(deliveries: &[DeliveryView], any_skipped: bool) -> &'static str {
    if deliveries.is_empty() {
        return if any_skipped { "skipped" } else { "accepted" };
    }
    let count = |states: &[&str]| deliveries.iter().filter(|d| states.contains(&d.state)).count();
    let failed = count(&["failed", "dead_lettered"]);
    let delivered = count(&["delivered", "opened", "clicked"]);
    let done = count(&["sent"]) + delivered;
    if failed + done < deliveries.len() {
        "in_progress"
    } else if failed == deliveries.len() {
        "failed"
    } else if failed > 0 {
        "partially_failed"
    } else if delivered == deliveries.len() {
        "delivered"
    } else {
        "sent"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_state() {
        let d = |state| DeliveryView {
            channel: "email".into(),
            target: "t".into(),
            state,
            attempt: 1,
            provider: None,
            reason: None,
            updated_at: 0,
        };
        assert_eq!(overall(&[], false), "accepted");
        assert_eq!(overall(&[], true), "skipped");
        assert_eq!(overall(&[d("sent"), d("retrying")], false), "in_progress");
        assert_eq!(overall(&[d("sent"), d("sent")], false), "sent");
        assert_eq!(overall(&[d("failed")], false), "failed");
        assert_eq!(overall(&[d("delivered")], false), "delivered");
    }
}
