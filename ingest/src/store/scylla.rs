//! Ingest's stores in ScyllaDB (`schemas/cql/ingest.cql`), shared by every ingest instance
//! of a cluster. Every statement is prepared once; idempotency keys are claimed with
//! lightweight transactions, so two instances given one key at once cannot both proceed.

use futures::future::try_join_all;
use scylla::DeserializeRow;
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;

use herald_runtime::scylla::{
    ScyllaConfig, ScyllaSetupError, SelectError, apply_cql, execute_lwt, select,
};
use herald_schemas::{DeliveryEvent, EventKind};

use super::{
    Begin, ClientRecords, ClientRow, EventRow, IdempotencyRecords, PENDING_TIMEOUT_MS,
    StatusRecords, StoreError, WebhookRecords, WebhookRow,
};

const TABLES_CQL: &str = include_str!("../../../schemas/cql/ingest.cql");

/// How often `begin` looks again when another instance changed the key between its reads.
const CLAIM_ATTEMPTS: usize = 3;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[derive(Debug)]
struct Statements {
    insert_client: PreparedStatement,
    insert_key: PreparedStatement,
    clients: PreparedStatement,
    client: PreparedStatement,
    revoke: PreparedStatement,
    client_of_key: PreparedStatement,
    claim_key: PreparedStatement,
    reclaim_key: PreparedStatement,
    finish_key: PreparedStatement,
    abandon_key: PreparedStatement,
    release_key: PreparedStatement,
    insert_event: PreparedStatement,
    index_accepted: PreparedStatement,
    events: PreparedStatement,
    event_details: PreparedStatement,
    user_page: PreparedStatement,
    set_webhook: PreparedStatement,
    webhook: PreparedStatement,
    delete_webhook: PreparedStatement,
    webhook_times: PreparedStatement,
    index_user: PreparedStatement,
    user_notifications: PreparedStatement,
    event_keys: PreparedStatement,
    delete_event: PreparedStatement,
    client_ids: PreparedStatement,
    delete_user_page: PreparedStatement,
    delete_user_index: PreparedStatement,
}

#[derive(Debug)]
pub struct ScyllaIngestStore {
    session: Session,
    statements: Statements,
    idempotency_window_ms: i64,
}

#[derive(DeserializeRow)]
struct UserPageRow {
    notification_id: String,
    accepted_at: i64,
}

/// Seconds for a TTL of `ms`, at least one (CQL's TTL is whole seconds, and 0 means none).
fn ttl_secs(ms: i64) -> i32 {
    i32::try_from(ms / 1000).unwrap_or(i32::MAX).max(1)
}

impl ScyllaIngestStore {
    /// The tables `herald migrate` creates, as CQL with a `{keyspace}` placeholder.
    pub const CQL: &str = TABLES_CQL;

    /// Creates ingest's tables if needed (the keyspace must exist: `herald migrate`).
    pub async fn create_tables(session: &Session, keyspace: &str) -> Result<(), StoreError> {
        apply_cql(session, TABLES_CQL, keyspace).await.map_err(unavailable)
    }

    pub async fn connect(
        config: &ScyllaConfig,
        idempotency_window_ms: i64,
    ) -> Result<Self, ScyllaSetupError> {
        let session = config.connect().await?;
        let keyspace = config.keyspace()?.to_owned();
        Self::new(session, &keyspace, idempotency_window_ms)
            .await
            .map_err(|e| config.connect_error(e.to_string()))
    }

    pub async fn new(
        session: Session,
        keyspace: &str,
        idempotency_window_ms: i64,
    ) -> Result<Self, StoreError> {
        let prepare = |cql: String| {
            let session = &session;
            async move { session.prepare(cql).await.map_err(unavailable) }
        };
        let k = keyspace;
        let idempotency_key = "WHERE client_id = ? AND request_key = ?";
        let statements = Statements {
            insert_client: prepare(format!(
                "INSERT INTO {k}.api_clients (client_id, name, key_hash, created_at, policy)
                 VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            insert_key: prepare(format!(
                "INSERT INTO {k}.api_keys (key_hash, client_id) VALUES (?, ?)"
            ))
            .await?,
            clients: prepare(format!(
                "SELECT client_id, name, created_at, revoked_at, policy FROM {k}.api_clients"
            ))
            .await?,
            client: prepare(format!(
                "SELECT client_id, name, created_at, revoked_at, policy FROM {k}.api_clients
                 WHERE client_id = ?"
            ))
            .await?,
            revoke: prepare(format!(
                "UPDATE {k}.api_clients SET revoked_at = ? WHERE client_id = ?"
            ))
            .await?,
            client_of_key: prepare(format!(
                "SELECT client_id FROM {k}.api_keys WHERE key_hash = ?"
            ))
            .await?,
            claim_key: prepare(format!(
                "INSERT INTO {k}.idempotency_keys (client_id, request_key, body_hash, notification_id, created_at)
                 VALUES (?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
            ))
            .await?,
            reclaim_key: prepare(format!(
                "UPDATE {k}.idempotency_keys USING TTL ?
                 SET body_hash = ?, notification_id = ?, status = null, response = null, created_at = ?
                 {idempotency_key} IF created_at = ?"
            ))
            .await?,
            finish_key: prepare(format!(
                "UPDATE {k}.idempotency_keys USING TTL ? SET status = ?, response = ?
                 {idempotency_key} IF EXISTS"
            ))
            .await?,
            abandon_key: prepare(format!(
                "DELETE FROM {k}.idempotency_keys {idempotency_key} IF status = null"
            ))
            .await?,
            release_key: prepare(format!(
                "UPDATE {k}.idempotency_keys USING TTL ? SET created_at = ?
                 {idempotency_key} IF status = null"
            ))
            .await?,
            insert_event: prepare(format!(
                "INSERT INTO {k}.notification_events (notification_id, occurred_at, event_id, kind,
                    channel, target, user_id, provider, reason, attempt, detail)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            index_accepted: prepare(format!(
                "INSERT INTO {k}.notifications_by_user (user_id, client_id, accepted_at, notification_id)
                 VALUES (?, ?, ?, ?)"
            ))
            .await?,
            events: prepare(format!(
                "SELECT kind, occurred_at, channel, target, user_id, provider, reason, attempt, detail
                 FROM {k}.notification_events WHERE notification_id = ?"
            ))
            .await?,
            event_details: prepare(format!(
                "SELECT kind, detail FROM {k}.notification_events WHERE notification_id = ?"
            ))
            .await?,
            user_page: prepare(format!(
                "SELECT notification_id, accepted_at FROM {k}.notifications_by_user
                 WHERE user_id = ? AND client_id = ? AND accepted_at < ? LIMIT ?"
            ))
            .await?,
            set_webhook: prepare(format!(
                "INSERT INTO {k}.client_webhooks (client_id, url, events, secret, created_at)
                 VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            webhook: prepare(format!(
                "SELECT client_id, url, events, secret FROM {k}.client_webhooks WHERE client_id = ?"
            ))
            .await?,
            delete_webhook: prepare(format!(
                "DELETE FROM {k}.client_webhooks WHERE client_id = ?"
            ))
            .await?,
            webhook_times: prepare(format!("SELECT created_at FROM {k}.client_webhooks")).await?,
            index_user: prepare(format!(
                "INSERT INTO {k}.notifications_of_user (user_id, notification_id) VALUES (?, ?)"
            ))
            .await?,
            user_notifications: prepare(format!(
                "SELECT notification_id FROM {k}.notifications_of_user WHERE user_id = ?"
            ))
            .await?,
            event_keys: prepare(format!(
                "SELECT occurred_at, event_id, user_id, detail FROM {k}.notification_events
                 WHERE notification_id = ?"
            ))
            .await?,
            delete_event: prepare(format!(
                "DELETE FROM {k}.notification_events
                 WHERE notification_id = ? AND occurred_at = ? AND event_id = ?"
            ))
            .await?,
            client_ids: prepare(format!("SELECT client_id FROM {k}.api_clients")).await?,
            delete_user_page: prepare(format!(
                "DELETE FROM {k}.notifications_by_user WHERE user_id = ? AND client_id = ?"
            ))
            .await?,
            delete_user_index: prepare(format!(
                "DELETE FROM {k}.notifications_of_user WHERE user_id = ?"
            ))
            .await?,
        };
        Ok(Self { session, statements, idempotency_window_ms })
    }

    async fn write(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<(), StoreError> {
        self.session.execute_unpaged(statement, values).await.map(drop).map_err(unavailable)
    }

    async fn rows<R>(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
    {
        select(&self.session, statement, values).await.map_err(|e| match e {
            SelectError::Execute(reason) => StoreError::Unavailable(reason),
            SelectError::Rows(reason) => StoreError::Corrupt(reason),
        })
    }
}

impl ClientRecords for ScyllaIngestStore {
    /// Stores a new client and its key's hash. The key row goes first: a key whose client
    /// row is missing authenticates nobody.
    async fn add_client(
        &self,
        client_id: &str,
        name: &str,
        key_hash: &str,
        created_at: i64,
        policy: &str,
    ) -> Result<(), StoreError> {
        self.write(&self.statements.insert_key, (key_hash, client_id)).await?;
        let values = (client_id, name, key_hash, created_at, policy);
        self.write(&self.statements.insert_client, values).await
    }

    async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        self.rows(&self.statements.clients, ()).await
    }

    /// Marks the client revoked; false if there is no such client or it already was.
    async fn revoke(&self, client_id: &str, now: i64) -> Result<bool, StoreError> {
        let rows: Vec<ClientRow> = self.rows(&self.statements.client, (client_id,)).await?;
        if rows.first().is_none_or(|row| row.revoked_at.is_some()) {
            return Ok(false);
        }
        self.write(&self.statements.revoke, (now, client_id)).await?;
        Ok(true)
    }

    /// The client holding the key with this hash, whether revoked or not.
    async fn client_of_key(&self, key_hash: &str) -> Result<Option<ClientRow>, StoreError> {
        #[derive(DeserializeRow)]
        struct KeyRow {
            client_id: Option<String>,
        }
        let keys: Vec<KeyRow> = self.rows(&self.statements.client_of_key, (key_hash,)).await?;
        let Some(client_id) = keys.into_iter().next().and_then(|k| k.client_id) else {
            return Ok(None);
        };
        let clients: Vec<ClientRow> = self.rows(&self.statements.client, (client_id,)).await?;
        Ok(clients.into_iter().next())
    }
}

impl IdempotencyRecords for ScyllaIngestStore {
    async fn begin(
        &self,
        (client_id, key): (&str, &str),
        body_hash: &str,
        proposed: &str,
        now: i64,
    ) -> Result<Begin, StoreError> {
        let ttl = ttl_secs(self.idempotency_window_ms);
        let statements = &self.statements;
        for _ in 0..CLAIM_ATTEMPTS {
            let values = (client_id, key, body_hash, proposed, now, ttl);
            let found = execute_lwt(&self.session, &statements.claim_key, values).await?;
            if found.applied {
                return Ok(Begin::Proceed { notification_id: proposed.to_owned() });
            }
            let created_at = found.bigint("created_at");
            // Cells written later (the answer) may outlive the claim by the seconds between
            // them: a row without its claim has expired, as has one older than the window.
            let expired = match (found.text("body_hash"), created_at) {
                (Some(_), Some(at)) => now - at >= self.idempotency_window_ms,
                _ => true,
            };
            let notification_id = if expired {
                proposed.to_owned()
            } else if found.text("body_hash") != Some(body_hash) {
                return Ok(Begin::Mismatch);
            } else if let (Some(status), Some(response)) =
                (found.int("status"), found.text("response"))
            {
                let status = u16::try_from(status)
                    .map_err(|_| StoreError::Corrupt(format!("answer status {status}")))?;
                return Ok(Begin::Replay { status, response: response.to_owned() });
            } else if created_at.is_some_and(|at| now - at < PENDING_TIMEOUT_MS) {
                return Ok(Begin::InProgress);
            } else {
                found.text("notification_id").unwrap_or(proposed).to_owned()
            };
            let values = (ttl, body_hash, &notification_id, now, client_id, key, created_at);
            let taken = execute_lwt(&self.session, &statements.reclaim_key, values).await?;
            if taken.applied {
                return Ok(Begin::Proceed { notification_id });
            }
            // Another instance claimed or answered it between our two statements: look again.
        }
        Ok(Begin::InProgress)
    }

    async fn finish(
        &self,
        (client_id, key): (&str, &str),
        status: u16,
        response: &str,
    ) -> Result<(), StoreError> {
        let ttl = ttl_secs(self.idempotency_window_ms);
        let values = (ttl, i32::from(status), response, client_id, key);
        execute_lwt(&self.session, &self.statements.finish_key, values).await.map(drop)?;
        Ok(())
    }

    async fn abandon(&self, (client_id, key): (&str, &str)) -> Result<(), StoreError> {
        execute_lwt(&self.session, &self.statements.abandon_key, (client_id, key)).await?;
        Ok(())
    }

    async fn release(&self, (client_id, key): (&str, &str), now: i64) -> Result<(), StoreError> {
        let ttl = ttl_secs(self.idempotency_window_ms);
        // Claimed as long ago as a stale claim: the next request takes it over.
        let values = (ttl, now - PENDING_TIMEOUT_MS, client_id, key);
        execute_lwt(&self.session, &self.statements.release_key, values).await?;
        Ok(())
    }
}

impl StatusRecords for ScyllaIngestStore {
    /// Stores events (a replayed event rewrites its own row) and indexes each `accepted`
    /// event under its user and client.
    async fn record(&self, events: Vec<DeliveryEvent>) -> Result<(), StoreError> {
        let writes = events.iter().map(|e| async move {
            let detail = serde_json::to_string(&e.detail).unwrap_or_else(|_| "{}".into());
            let values = (
                &e.notification_id,
                e.occurred_at,
                &e.event_id,
                e.kind.as_str(),
                &e.channel,
                &e.target,
                &e.user_id,
                &e.provider,
                &e.reason,
                e.attempt,
                detail,
            );
            self.write(&self.statements.insert_event, values).await?;
            // Which notifications name a user, whoever sent them: what erasing them finds.
            if let Some(user) = &e.user_id {
                self.write(&self.statements.index_user, (user, &e.notification_id)).await?;
            }
            let client = e.detail.get("client_id");
            if let (EventKind::Accepted, Some(user), Some(client)) = (e.kind, &e.user_id, client) {
                let values = (user, client, e.occurred_at, &e.notification_id);
                self.write(&self.statements.index_accepted, values).await?;
            }
            Ok::<(), StoreError>(())
        });
        try_join_all(writes).await.map(drop)
    }

    /// The events of a notification, oldest first.
    async fn events(&self, notification_id: &str) -> Result<Vec<EventRow>, StoreError> {
        self.rows(&self.statements.events, (notification_id,)).await
    }

    /// The API client that sent a notification: the `client_id` of its first `accepted`
    /// event. The webhook sender asks this for every event, so it reads two columns and
    /// builds no status.
    async fn client_of(&self, notification_id: &str) -> Result<Option<String>, StoreError> {
        #[derive(DeserializeRow)]
        struct DetailRow {
            kind: String,
            detail: Option<String>,
        }
        let rows: Vec<DetailRow> =
            self.rows(&self.statements.event_details, (notification_id,)).await?;
        Ok(rows.into_iter().filter(|row| row.kind == EventKind::Accepted.as_str()).find_map(
            |row| {
                let detail: std::collections::BTreeMap<String, String> =
                    serde_json::from_str(row.detail.as_deref()?).ok()?;
                detail.get("client_id").cloned()
            },
        ))
    }

    /// Up to `fetch` (notification id, accepted at) of a user from a client, accepted before
    /// `before`, newest first.
    async fn user_page(
        &self,
        (user_id, client_id): (&str, &str),
        before: i64,
        fetch: i32,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows: Vec<UserPageRow> =
            self.rows(&self.statements.user_page, (user_id, client_id, before, fetch)).await?;
        Ok(rows.into_iter().map(|r| (r.notification_id, r.accepted_at)).collect())
    }

    /// Each statement is idempotent: an erasure interrupted half-way is finished by running
    /// it again (the index of the user's notifications goes last).
    async fn erase_user(&self, user_id: &str) -> Result<u64, StoreError> {
        #[derive(DeserializeRow)]
        struct EventKey {
            occurred_at: i64,
            event_id: String,
            user_id: Option<String>,
            detail: Option<String>,
        }
        let ids: Vec<(String,)> =
            self.rows(&self.statements.user_notifications, (user_id,)).await?;
        let mut erased = 0;
        // The clients that sent to them: their lists of the user's notifications go too.
        let mut clients = std::collections::BTreeSet::new();
        for (notification_id,) in ids {
            let keys: Vec<EventKey> =
                self.rows(&self.statements.event_keys, (&notification_id,)).await?;
            let others = keys.iter().any(|k| k.user_id.as_deref().is_some_and(|u| u != user_id));
            for key in keys {
                let detail = key.detail.as_deref().and_then(|d| {
                    serde_json::from_str::<std::collections::BTreeMap<String, String>>(d).ok()
                });
                if let Some(client) = detail.and_then(|mut d| d.remove("client_id")) {
                    clients.insert(client);
                }
                let theirs = match key.user_id.as_deref() {
                    Some(named) => named == user_id,
                    None => !others,
                };
                if theirs {
                    let values = (&notification_id, key.occurred_at, &key.event_id);
                    self.write(&self.statements.delete_event, values).await?;
                    erased += 1;
                }
            }
        }
        let known: Vec<(String,)> = self.rows(&self.statements.client_ids, ()).await?;
        clients.extend(known.into_iter().map(|(client_id,)| client_id));
        for client_id in clients {
            self.write(&self.statements.delete_user_page, (user_id, &client_id)).await?;
        }
        self.write(&self.statements.delete_user_index, (user_id,)).await?;
        Ok(erased)
    }
}

impl WebhookRecords for ScyllaIngestStore {
    async fn set_webhook(
        &self,
        client_id: &str,
        (url, events, secret): (&str, &str, &str),
        now: i64,
    ) -> Result<(), StoreError> {
        self.write(&self.statements.set_webhook, (client_id, url, events, secret, now)).await
    }

    async fn webhook(&self, client_id: &str) -> Result<Option<WebhookRow>, StoreError> {
        let rows: Vec<WebhookRow> = self.rows(&self.statements.webhook, (client_id,)).await?;
        Ok(rows.into_iter().next())
    }

    /// Removes a client's webhook; false if it had none.
    async fn remove_webhook(&self, client_id: &str) -> Result<bool, StoreError> {
        if self.webhook(client_id).await?.is_none() {
            return Ok(false);
        }
        self.write(&self.statements.delete_webhook, (client_id,)).await?;
        Ok(true)
    }

    /// When the oldest webhook now set was set.
    async fn first_webhook_at(&self) -> Result<Option<i64>, StoreError> {
        #[derive(DeserializeRow)]
        struct CreatedRow {
            created_at: Option<i64>,
        }
        let rows: Vec<CreatedRow> = self.rows(&self.statements.webhook_times, ()).await?;
        Ok(rows.into_iter().filter_map(|r| r.created_at).min())
    }
}
