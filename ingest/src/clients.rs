//! API clients and their keys. A key is shown once, when it is created; only its SHA-256 is
//! stored. Keys are 256 random bits, so a fast hash is safe here (no dictionary to guess
//! from). A key that authenticated is remembered for [`RECENT_KEY_TTL`], so that a busy
//! client costs the store one lookup a second instead of one a request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_runtime::sqlite::SqliteError;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{
    AnyIngestStore, ClientRecords as _, ClientRow, ScyllaIngestStore, SqliteIngestStore, StoreError,
};

/// What a client may send, and how fast. Empty lists allow everything. The directory is
/// another matter: a key reads or changes it only when given that access, so that a key
/// made to send cannot erase users.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientPolicy {
    /// Requestable channels: email, sms, push.
    pub channels: Vec<String>,
    pub categories: Vec<String>,
    /// Requests per second (a burst of one second's worth); none: unlimited.
    pub rate_per_second: Option<f64>,
    /// What it may do with the directory API; nothing when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryAccess>,
}

/// A key's access to the directory API: reading (`GET`), or reading and changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryAccess {
    Read,
    Write,
}

impl DirectoryAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

impl ClientPolicy {
    /// Whether this client may use the directory API as `wanted` says.
    pub fn allows_directory(&self, wanted: DirectoryAccess) -> bool {
        self.directory.is_some_and(|given| given >= wanted)
    }

    /// Why this client may not send on `channel` in `category`, if it may not.
    pub fn refuses(&self, channel: &str, category: &str) -> Option<String> {
        if !self.channels.is_empty() && !self.channels.iter().any(|c| c == channel) {
            return Some(format!("this API key may not send on channel {channel:?}"));
        }
        if !self.categories.is_empty() && !self.categories.iter().any(|c| c == category) {
            return Some(format!("this API key may not send category {category:?}"));
        }
        None
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub client_id: String,
    pub policy: ClientPolicy,
}

/// Keys start with this, so they are recognisable in secret scanners.
const KEY_PREFIX: &str = "hrld_";

#[derive(Debug, Clone, PartialEq)]
pub struct ApiClient {
    pub client_id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked: bool,
    pub policy: ClientPolicy,
}

/// How long a key that authenticated is taken as valid without asking the store again, and
/// so how long a revoked key (or a changed policy) may still be honoured by a running API.
pub const RECENT_KEY_TTL: Duration = Duration::from_secs(1);

/// The most keys remembered; beyond it a key is looked up on every request until expired
/// ones make room. Only keys that authenticated are remembered, so guesses cannot fill it.
const MAX_RECENT_KEYS: usize = 4096;

#[derive(Debug, Clone)]
pub struct ApiClients {
    backend: AnyIngestStore,
    recent: Arc<RecentKeys>,
}

/// Callers by key hash, with when each was looked up.
#[derive(Debug)]
struct RecentKeys {
    ttl: Duration,
    callers: Mutex<HashMap<String, (Caller, Instant)>>,
}

impl RecentKeys {
    fn new(ttl: Duration) -> Self {
        Self { ttl, callers: Mutex::new(HashMap::new()) }
    }

    fn get(&self, key_hash: &str, now: Instant) -> Option<Caller> {
        let callers = self.callers.lock().unwrap_or_else(|p| p.into_inner());
        let (caller, looked_up) = callers.get(key_hash)?;
        (now.saturating_duration_since(*looked_up) < self.ttl).then(|| caller.clone())
    }

    fn forget_client(&self, client_id: &str) {
        let mut callers = self.callers.lock().unwrap_or_else(|p| p.into_inner());
        callers.retain(|_, (caller, _)| caller.client_id != client_id);
    }

    fn remember(&self, key_hash: String, caller: Caller, now: Instant) {
        let mut callers = self.callers.lock().unwrap_or_else(|p| p.into_inner());
        if callers.len() >= MAX_RECENT_KEYS {
            callers
                .retain(|_, (_, looked_up)| now.saturating_duration_since(*looked_up) < self.ttl);
        }
        if callers.len() < MAX_RECENT_KEYS || callers.contains_key(&key_hash) {
            callers.insert(key_hash, (caller, now));
        }
    }
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A stored policy; one this version cannot read allows nothing rather than everything.
fn read_policy(stored: &str) -> ClientPolicy {
    serde_json::from_str(stored).unwrap_or_else(|_| ClientPolicy {
        channels: vec!["none".into()],
        ..ClientPolicy::default()
    })
}

impl From<ClientRow> for ApiClient {
    fn from(row: ClientRow) -> Self {
        Self {
            client_id: row.client_id,
            name: row.name.unwrap_or_default(),
            created_at: row.created_at.unwrap_or_default(),
            revoked: row.revoked_at.is_some(),
            policy: read_policy(row.policy.as_deref().unwrap_or("{}")),
        }
    }
}

impl ApiClients {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SqliteError> {
        Self::open_remembering_keys_for(path, RECENT_KEY_TTL)
    }

    /// [`ApiClients::open`] with keys remembered for `ttl` (zero: looked up every time).
    pub fn open_remembering_keys_for(
        path: impl Into<PathBuf>,
        ttl: Duration,
    ) -> Result<Self, SqliteError> {
        let store = SqliteIngestStore::open(path, 0)?;
        Ok(Self { backend: AnyIngestStore::Sqlite(store), recent: Arc::new(RecentKeys::new(ttl)) })
    }

    pub fn on_scylla(store: Arc<ScyllaIngestStore>) -> Self {
        Self {
            backend: AnyIngestStore::Scylla(store),
            recent: Arc::new(RecentKeys::new(RECENT_KEY_TTL)),
        }
    }

    /// Creates a client allowed everything; see [`ApiClients::add_with`].
    pub async fn add(&self, name: &str) -> Result<(ApiClient, String), StoreError> {
        self.add_with(name, ClientPolicy::default()).await
    }

    /// Creates a client; returns it and its key, which is not stored and cannot be shown again.
    pub async fn add_with(
        &self,
        name: &str,
        policy: ClientPolicy,
    ) -> Result<(ApiClient, String), StoreError> {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let key = format!("{KEY_PREFIX}{}", hex::encode(secret));
        let client = ApiClient {
            client_id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            created_at: herald_schemas::now_millis(),
            revoked: false,
            policy,
        };
        let key_hash = hash(&key);
        let policy = serde_json::to_string(&client.policy).unwrap_or_else(|_| "{}".into());
        let (id, name, at) = (&client.client_id, &client.name, client.created_at);
        self.backend.add_client(id, name, &key_hash, at, &policy).await?;
        Ok((client, key))
    }

    /// Every client, oldest first.
    pub async fn list(&self) -> Result<Vec<ApiClient>, StoreError> {
        let mut clients: Vec<ApiClient> =
            self.backend.clients().await?.into_iter().map(ApiClient::from).collect();
        clients.sort_by(|a, b| (a.created_at, &a.client_id).cmp(&(b.created_at, &b.client_id)));
        Ok(clients)
    }

    /// Revokes a client's key; returns false when no such client exists. This handle forgets
    /// the key at once; other processes within [`RECENT_KEY_TTL`].
    pub async fn revoke(&self, client_id: &str) -> Result<bool, StoreError> {
        let now = herald_schemas::now_millis();
        let revoked = self.backend.revoke(client_id, now).await?;
        self.recent.forget_client(client_id);
        Ok(revoked)
    }

    /// The client a presented key belongs to, if the key is known and not revoked (as of at
    /// most [`RECENT_KEY_TTL`] ago).
    pub async fn authenticate(&self, key: &str) -> Result<Option<Caller>, StoreError> {
        if !key.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let key_hash = hash(key);
        if let Some(caller) = self.recent.get(&key_hash, Instant::now()) {
            return Ok(Some(caller));
        }
        let looked_up = Instant::now();
        let caller = self
            .backend
            .client_of_key(&key_hash)
            .await?
            .filter(|row| row.revoked_at.is_none())
            .map(|row| Caller {
                policy: read_policy(row.policy.as_deref().unwrap_or("{}")),
                client_id: row.client_id,
            });
        if let Some(caller) = &caller {
            self.recent.remember(key_hash, caller.clone(), looked_up);
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_authenticate_until_revoked_and_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.db");
        let clients = ApiClients::open(&path).unwrap();
        let (client, key) = clients.add("billing").await.unwrap();
        let caller = clients.authenticate(&key).await.unwrap().unwrap();
        assert_eq!(caller.client_id, client.client_id);
        assert_eq!(clients.authenticate("hrld_wrong").await.unwrap(), None);

        let raw = std::fs::read(&path).unwrap();
        let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
        let needle = key.as_bytes();
        let contains = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(&raw) && !contains(&wal), "the key itself is never stored");

        assert!(clients.revoke(&client.client_id).await.unwrap());
        assert_eq!(clients.authenticate(&key).await.unwrap(), None);
        assert!(clients.list().await.unwrap()[0].revoked);
    }

    #[tokio::test]
    async fn a_key_revoked_elsewhere_is_honoured_until_its_lookup_expires_and_refused_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.db");
        let ttl = Duration::from_millis(300);
        let api = ApiClients::open_remembering_keys_for(&path, ttl).unwrap();
        // The operator's command opens the store on its own, as `herald clients revoke` does.
        let operator = ApiClients::open(&path).unwrap();
        let (client, key) = operator.add("billing").await.unwrap();
        assert!(api.authenticate(&key).await.unwrap().is_some());

        assert!(operator.revoke(&client.client_id).await.unwrap());
        assert!(api.authenticate(&key).await.unwrap().is_some(), "remembered for the ttl");
        tokio::time::sleep(ttl).await;
        assert_eq!(api.authenticate(&key).await.unwrap(), None, "looked up again and refused");
        assert_eq!(api.authenticate(&key).await.unwrap(), None, "a refusal is not remembered");

        let (client, key) = operator.add("shop").await.unwrap();
        assert!(api.authenticate(&key).await.unwrap().is_some());
        assert!(api.revoke(&client.client_id).await.unwrap());
        assert_eq!(api.authenticate(&key).await.unwrap(), None, "its own revocation at once");
    }

    #[test]
    fn only_so_many_keys_are_remembered_and_expired_ones_make_room() {
        let recent = RecentKeys::new(Duration::from_secs(1));
        let caller = Caller { client_id: "c".into(), policy: ClientPolicy::default() };
        let start = Instant::now();
        for i in 0..MAX_RECENT_KEYS + 10 {
            recent.remember(format!("k{i}"), caller.clone(), start);
        }
        assert_eq!(recent.callers.lock().unwrap().len(), MAX_RECENT_KEYS);
        assert!(recent.get(&format!("k{MAX_RECENT_KEYS}"), start).is_none(), "not remembered");

        let later = start + Duration::from_secs(2);
        recent.remember("fresh".into(), caller, later);
        assert!(recent.get("fresh", later).is_some());
        assert!(recent.get("k0", later).is_none(), "expired");
        assert_eq!(recent.callers.lock().unwrap().len(), 1, "expired entries made room");
    }

    #[tokio::test]
    async fn policies_are_stored_and_limit_channels_and_categories() {
        let dir = tempfile::tempdir().unwrap();
        let clients = ApiClients::open(dir.path().join("ingest.db")).unwrap();
        let policy = ClientPolicy {
            channels: vec!["email".into()],
            categories: vec!["transactional".into()],
            rate_per_second: Some(5.0),
            directory: Some(DirectoryAccess::Read),
        };
        let (_, key) = clients.add_with("billing", policy.clone()).await.unwrap();
        let caller = clients.authenticate(&key).await.unwrap().unwrap();
        assert_eq!(caller.policy, policy);
        assert!(policy.refuses("email", "transactional").is_none());
        assert!(policy.refuses("sms", "transactional").unwrap().contains("\"sms\""));
        assert!(policy.refuses("email", "marketing").unwrap().contains("\"marketing\""));
        assert!(ClientPolicy::default().refuses("push", "marketing").is_none());
        assert!(policy.allows_directory(DirectoryAccess::Read));
        assert!(!policy.allows_directory(DirectoryAccess::Write), "read only");
        assert!(
            !ClientPolicy::default().allows_directory(DirectoryAccess::Read),
            "given, never assumed"
        );
        assert_eq!(clients.list().await.unwrap()[0].policy, policy);
        drop(clients);
        ApiClients::open(dir.path().join("ingest.db")).unwrap();
    }
}
