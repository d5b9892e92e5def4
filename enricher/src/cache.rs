//! A read-through cache in front of any directory: users, devices, preferences and templates
//! are read once per TTL instead of once per request. Bounded in entries. What the directory
//! changes ([`crate::freshness`]) drops an entry the moment the change is applied, in every
//! enricher process; the TTL only bounds what a write made behind Herald's back (by hand in
//! the store) can leave.
//!
//! An entry dropped while a read of the same key is under way must not come back with what
//! that read found before the change: each key's slot counts its invalidations, and a read
//! stores its answer only if the count did not move meanwhile.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_runtime::metrics;
use moka::future::Cache;
use prometheus::IntCounterVec;

use crate::directory::{
    Device, Directory, DirectoryError, Platform, Preference, Profile, QuotaCounter,
    TemplateVariant, User, profile_from_parts,
};

fn lookups() -> &'static IntCounterVec {
    static LOOKUPS: OnceLock<IntCounterVec> = OnceLock::new();
    LOOKUPS.get_or_init(|| {
        metrics::counter_vec(
            "herald_directory_cache_lookups_total",
            "Directory lookups by table and outcome (hit, miss).",
            &["table", "outcome"],
        )
    })
}

pub(crate) fn define_metrics() {
    let _ = lookups();
}

/// Slots counting invalidations, shared by keys that hash alike: a read that loses the race
/// to an invalidation of another key of its slot is merely not cached.
const SLOTS: usize = 4096;

#[derive(Debug)]
struct Generations(Box<[AtomicU64]>);

impl Generations {
    fn new() -> Self {
        Self((0..SLOTS).map(|_| AtomicU64::new(0)).collect())
    }

    fn slot(&self, key: &str) -> &AtomicU64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        &self.0[(hasher.finish() % SLOTS as u64) as usize]
    }

    fn read(&self, key: &str) -> u64 {
        self.slot(key).load(Ordering::SeqCst)
    }

    fn bump(&self, key: &str) {
        self.slot(key).fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
pub struct CachedDirectory<D> {
    inner: D,
    users: Cache<String, Option<User>>,
    devices: Cache<String, Vec<Device>>,
    preferences: Cache<String, Vec<Preference>>,
    templates: Cache<String, Vec<TemplateVariant>>,
    /// Keyed by user id for the user tables, by `template:<id>` for templates.
    generations: Generations,
}

impl<D: Directory> CachedDirectory<D> {
    /// Each table keeps at most `max_entries` keys for at most `ttl`.
    pub fn new(inner: D, ttl: Duration, max_entries: u64) -> Self {
        fn cache<V: Clone + Send + Sync + 'static>(ttl: Duration, max: u64) -> Cache<String, V> {
            Cache::builder().time_to_live(ttl).max_capacity(max).build()
        }
        Self {
            inner,
            users: cache(ttl, max_entries),
            devices: cache(ttl, max_entries),
            preferences: cache(ttl, max_entries),
            templates: cache(ttl, max_entries),
            generations: Generations::new(),
        }
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Drops what is cached of a user; a read under way keeps its answer to itself.
    pub async fn invalidate_user(&self, user_id: &str) {
        self.generations.bump(user_id);
        self.users.invalidate(user_id).await;
        self.devices.invalidate(user_id).await;
        self.preferences.invalidate(user_id).await;
    }

    /// Drops what is cached of a template; a read under way keeps its answer to itself.
    pub async fn invalidate_template(&self, template_id: &str) {
        self.generations.bump(&template_key(template_id));
        self.templates.invalidate(template_id).await;
    }

    /// Stores `value` under `key` unless `generation_key` was invalidated since `seen`; an
    /// invalidation racing the insert takes it out again.
    async fn store<V: Clone + Send + Sync + 'static>(
        &self,
        cache: &Cache<String, V>,
        (key, generation_key): (&str, &str),
        seen: u64,
        value: V,
    ) {
        if self.generations.read(generation_key) != seen {
            return;
        }
        cache.insert(key.to_owned(), value).await;
        if self.generations.read(generation_key) != seen {
            cache.invalidate(key).await;
        }
    }

    /// The cached value of `key`, or `load`'s, stored unless an invalidation came between.
    async fn read_through<V, F>(
        &self,
        (cache, table): (&Cache<String, V>, &str),
        (key, generation_key): (&str, &str),
        load: F,
    ) -> Result<V, DirectoryError>
    where
        V: Clone + Send + Sync + 'static,
        F: Future<Output = Result<V, DirectoryError>>,
    {
        if let Some(value) = cache.get(key).await {
            lookups().with_label_values(&[table, "hit"]).inc();
            return Ok(value);
        }
        let seen = self.generations.read(generation_key);
        let value = load.await?;
        lookups().with_label_values(&[table, "miss"]).inc();
        self.store(cache, (key, generation_key), seen, value.clone()).await;
        Ok(value)
    }
}

fn template_key(template_id: &str) -> String {
    format!("template:{template_id}")
}

impl<D: Directory> Directory for CachedDirectory<D> {
    async fn upsert_user(&self, user: User) -> Result<(), DirectoryError> {
        let key = user.user_id.clone();
        self.inner.upsert_user(user).await?;
        self.invalidate_user(&key).await;
        Ok(())
    }

    async fn upsert_device(&self, user_id: &str, device: Device) -> Result<(), DirectoryError> {
        self.inner.upsert_device(user_id, device).await?;
        self.invalidate_user(user_id).await;
        Ok(())
    }

    async fn set_preference(
        &self,
        user_id: &str,
        preference: Preference,
    ) -> Result<(), DirectoryError> {
        self.inner.set_preference(user_id, preference).await?;
        self.invalidate_user(user_id).await;
        Ok(())
    }

    async fn put_template(
        &self,
        template_id: &str,
        variants: Vec<TemplateVariant>,
    ) -> Result<(), DirectoryError> {
        self.inner.put_template(template_id, variants).await?;
        self.invalidate_template(template_id).await;
        Ok(())
    }

    async fn user(&self, user_id: &str) -> Result<Option<User>, DirectoryError> {
        let load = self.inner.user(user_id);
        self.read_through((&self.users, "users"), (user_id, user_id), load).await
    }

    async fn devices(&self, user_id: &str) -> Result<Vec<Device>, DirectoryError> {
        let load = self.inner.devices(user_id);
        self.read_through((&self.devices, "devices"), (user_id, user_id), load).await
    }

    async fn preferences(&self, user_id: &str) -> Result<Vec<Preference>, DirectoryError> {
        let load = self.inner.preferences(user_id);
        self.read_through((&self.preferences, "preferences"), (user_id, user_id), load).await
    }

    /// A recipient missing from all three tables (a cold cache, or its entries expired
    /// together) is read with one `profile` call to the store instead of three.
    async fn profile(&self, user_id: &str) -> Result<Option<Profile>, DirectoryError> {
        let cached = (
            self.users.get(user_id).await,
            self.devices.get(user_id).await,
            self.preferences.get(user_id).await,
        );
        let count = |tables: &[&str], outcome: &str| {
            for table in tables {
                lookups().with_label_values(&[table, outcome]).inc();
            }
        };
        match cached {
            (Some(None), _, _) => {
                count(&["users"], "hit");
                Ok(None)
            }
            (Some(Some(user)), Some(devices), Some(preferences)) => {
                count(&["users", "devices", "preferences"], "hit");
                Ok(Some(Profile { user, devices, preferences }))
            }
            (None, None, None) => {
                let seen = self.generations.read(user_id);
                let loaded = self.inner.profile(user_id).await?;
                let key = (user_id, user_id);
                match &loaded {
                    None => {
                        count(&["users"], "miss");
                        self.store(&self.users, key, seen, None).await;
                    }
                    Some(profile) => {
                        count(&["users", "devices", "preferences"], "miss");
                        self.store(&self.users, key, seen, Some(profile.user.clone())).await;
                        self.store(&self.devices, key, seen, profile.devices.clone()).await;
                        self.store(&self.preferences, key, seen, profile.preferences.clone()).await;
                    }
                }
                Ok(loaded)
            }
            // Some tables cached, others not: each reads through on its own.
            _ => profile_from_parts(self, user_id).await,
        }
    }

    async fn template(&self, template_id: &str) -> Result<Vec<TemplateVariant>, DirectoryError> {
        let load = self.inner.template(template_id);
        let generation_key = template_key(template_id);
        self.read_through((&self.templates, "templates"), (template_id, &generation_key), load)
            .await
    }

    async fn take_quota(
        &self,
        counter: &QuotaCounter,
        notification_id: &str,
        limit: u32,
    ) -> Result<bool, DirectoryError> {
        self.inner.take_quota(counter, notification_id, limit).await
    }

    async fn token_owners(
        &self,
        platform: Platform,
        token: &str,
    ) -> Result<Vec<(String, String)>, DirectoryError> {
        self.inner.token_owners(platform, token).await
    }

    async fn register_device(
        &self,
        user_id: &str,
        device: Device,
    ) -> Result<Vec<(String, String)>, DirectoryError> {
        let others = self.inner.register_device(user_id, device).await?;
        self.invalidate_user(user_id).await;
        Ok(others)
    }

    async fn ensure_user(&self, user_id: &str) -> Result<(), DirectoryError> {
        self.inner.ensure_user(user_id).await?;
        self.invalidate_user(user_id).await;
        Ok(())
    }

    async fn remove_device(&self, user_id: &str, device_id: &str) -> Result<bool, DirectoryError> {
        let removed = self.inner.remove_device(user_id, device_id).await?;
        self.invalidate_user(user_id).await;
        Ok(removed)
    }

    async fn delete_user(&self, user_id: &str) -> Result<bool, DirectoryError> {
        let existed = self.inner.delete_user(user_id).await?;
        self.invalidate_user(user_id).await;
        Ok(existed)
    }

    async fn delete_template(&self, template_id: &str) -> Result<bool, DirectoryError> {
        let existed = self.inner.delete_template(template_id).await?;
        self.invalidate_template(template_id).await;
        Ok(existed)
    }

    async fn template_ids(&self) -> Result<Vec<String>, DirectoryError> {
        self.inner.template_ids().await
    }

    async fn progress(&self) -> Result<Vec<(String, i32, i64)>, DirectoryError> {
        self.inner.progress().await
    }

    async fn set_progress(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), DirectoryError> {
        self.inner.set_progress(topic, partition, next_offset).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteDirectory;

    fn user(id: &str, email: &str) -> User {
        User {
            user_id: id.into(),
            email: Some(email.into()),
            phone: None,
            locale: None,
            timezone: None,
            region: None,
            quiet_hours: None,
        }
    }

    #[tokio::test]
    async fn reads_are_served_from_the_cache_until_the_ttl_or_a_write_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let cached = CachedDirectory::new(
            SqliteDirectory::open(&path).unwrap(),
            Duration::from_millis(300),
            100,
        );
        // Another process writing the same store, behind the cache's back.
        let elsewhere = SqliteDirectory::open(&path).unwrap();
        cached.upsert_user(user("u", "old@example.com")).await.unwrap();
        assert_eq!(
            cached.user("u").await.unwrap().unwrap().email.as_deref(),
            Some("old@example.com")
        );

        elsewhere.upsert_user(user("u", "new@example.com")).await.unwrap();
        assert_eq!(
            cached.user("u").await.unwrap().unwrap().email.as_deref(),
            Some("old@example.com"),
            "served from the cache"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            cached.user("u").await.unwrap().unwrap().email.as_deref(),
            Some("new@example.com"),
            "reaches the cache within the TTL"
        );
        cached.upsert_user(user("u", "mine@example.com")).await.unwrap();
        assert_eq!(
            cached.user("u").await.unwrap().unwrap().email.as_deref(),
            Some("mine@example.com"),
            "a write through the cache is seen at once"
        );
        assert_eq!(cached.user("ghost").await.unwrap(), None, "absence is cached too");
    }

    #[tokio::test]
    async fn one_cold_profile_read_fills_the_user_device_and_preference_caches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let cached = CachedDirectory::new(
            SqliteDirectory::open(&path).unwrap(),
            Duration::from_secs(60),
            100,
        );
        let elsewhere = SqliteDirectory::open(&path).unwrap();
        let phone = Device {
            device_id: "phone".into(),
            platform: Platform::Ios,
            token: "t1".into(),
            app_id: None,
            active: true,
        };
        elsewhere.upsert_user(user("u", "u@example.com")).await.unwrap();
        elsewhere.upsert_device("u", phone.clone()).await.unwrap();
        let first = cached.profile("u").await.unwrap().unwrap();
        assert_eq!(first.devices, vec![phone.clone()]);

        // Changes behind the cache's back: every part of the profile is served from the cache.
        elsewhere.upsert_user(user("u", "new@example.com")).await.unwrap();
        elsewhere.upsert_device("u", Device { device_id: "tablet".into(), ..phone }).await.unwrap();
        let opt_out =
            Preference { category: "marketing".into(), channel: "push".into(), opted_in: false };
        elsewhere.set_preference("u", opt_out).await.unwrap();
        assert_eq!(cached.profile("u").await.unwrap(), Some(first.clone()));
        assert_eq!(cached.devices("u").await.unwrap(), first.devices, "the table lookups too");
        assert!(cached.preferences("u").await.unwrap().is_empty());

        assert_eq!(cached.profile("ghost").await.unwrap(), None);
        elsewhere.upsert_user(user("ghost", "g@example.com")).await.unwrap();
        assert_eq!(cached.profile("ghost").await.unwrap(), None, "absence is cached too");

        // A write through the cache drops the user: all of them is read again.
        cached
            .set_preference(
                "u",
                Preference { category: "security".into(), channel: "sms".into(), opted_in: true },
            )
            .await
            .unwrap();
        let again = cached.profile("u").await.unwrap().unwrap();
        assert_eq!(again.user.email.as_deref(), Some("new@example.com"), "read again");
        assert_eq!((again.devices.len(), again.preferences.len()), (2, 2));
    }

    /// A read that began before an invalidation must not put back what it found: the next
    /// read after the invalidation goes to the store.
    #[tokio::test]
    async fn a_read_racing_an_invalidation_does_not_cache_what_it_read_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let cached = CachedDirectory::new(
            SqliteDirectory::open(&path).unwrap(),
            Duration::from_secs(60),
            100,
        );
        let elsewhere = SqliteDirectory::open(&path).unwrap();
        elsewhere.upsert_user(user("u", "old@example.com")).await.unwrap();
        // The read's view is taken, then the user changes and is invalidated, then the read
        // stores what it found: it must not stay.
        let seen = cached.generations.read("u");
        let stale = elsewhere.user("u").await.unwrap();
        elsewhere.upsert_user(user("u", "new@example.com")).await.unwrap();
        cached.invalidate_user("u").await;
        cached.store(&cached.users, ("u", "u"), seen, stale).await;
        assert_eq!(
            cached.user("u").await.unwrap().unwrap().email.as_deref(),
            Some("new@example.com")
        );
        // Without the invalidation in between, it is stored (and served) as read.
        let seen = cached.generations.read("v");
        cached.store(&cached.users, ("v", "v"), seen, Some(user("v", "cached@example.com"))).await;
        assert_eq!(
            cached.user("v").await.unwrap().unwrap().email.as_deref(),
            Some("cached@example.com")
        );
    }
}
