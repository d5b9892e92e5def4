//! A read-through cache in front of any directory: users, devices, preferences and templates
//! are read once per TTL instead of once per request. Bounded in entries; a change made
//! elsewhere reaches the enricher within the TTL, and a write through this directory (a
//! dead token, an import) drops what it makes stale at once.

use std::sync::OnceLock;
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

#[derive(Debug)]
pub struct CachedDirectory<D> {
    inner: D,
    users: Cache<String, Option<User>>,
    devices: Cache<String, Vec<Device>>,
    preferences: Cache<String, Vec<Preference>>,
    templates: Cache<String, Vec<TemplateVariant>>,
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
        }
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }
}

/// The cached value of `key`, or `load`'s, stored; concurrent misses of one key load once.
async fn read_through<V, F>(
    cache: &Cache<String, V>,
    table: &str,
    key: &str,
    load: F,
) -> Result<V, DirectoryError>
where
    V: Clone + Send + Sync + 'static,
    F: Future<Output = Result<V, DirectoryError>>,
{
    let mut loaded = false;
    let value = cache
        .try_get_with_by_ref(key, async {
            loaded = true;
            load.await
        })
        .await
        .map_err(|e| (*e).clone())?;
    let outcome = if loaded { "miss" } else { "hit" };
    lookups().with_label_values(&[table, outcome]).inc();
    Ok(value)
}

impl<D: Directory> Directory for CachedDirectory<D> {
    async fn upsert_user(&self, user: User) -> Result<(), DirectoryError> {
        let key = user.user_id.clone();
        self.inner.upsert_user(user).await?;
        self.users.invalidate(&key).await;
        Ok(())
    }

    async fn upsert_device(&self, user_id: &str, device: Device) -> Result<(), DirectoryError> {
        self.inner.upsert_device(user_id, device).await?;
        self.devices.invalidate(user_id).await;
        Ok(())
    }

    async fn set_preference(
        &self,
        user_id: &str,
        preference: Preference,
    ) -> Result<(), DirectoryError> {
        self.inner.set_preference(user_id, preference).await?;
        self.preferences.invalidate(user_id).await;
        Ok(())
    }

    async fn upsert_template(&self, variant: TemplateVariant) -> Result<(), DirectoryError> {
        let key = variant.template_id.clone();
        self.inner.upsert_template(variant).await?;
        self.templates.invalidate(&key).await;
        Ok(())
    }

    async fn user(&self, user_id: &str) -> Result<Option<User>, DirectoryError> {
        read_through(&self.users, "users", user_id, self.inner.user(user_id)).await
    }

    async fn devices(&self, user_id: &str) -> Result<Vec<Device>, DirectoryError> {
        read_through(&self.devices, "devices", user_id, self.inner.devices(user_id)).await
    }

    async fn preferences(&self, user_id: &str) -> Result<Vec<Preference>, DirectoryError> {
        let load = self.inner.preferences(user_id);
        read_through(&self.preferences, "preferences", user_id, load).await
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
                let loaded = self.inner.profile(user_id).await?;
                let key = user_id.to_owned();
                match &loaded {
                    None => {
                        count(&["users"], "miss");
                        self.users.insert(key, None).await;
                    }
                    Some(profile) => {
                        count(&["users", "devices", "preferences"], "miss");
                        self.users.insert(key.clone(), Some(profile.user.clone())).await;
                        self.devices.insert(key.clone(), profile.devices.clone()).await;
                        self.preferences.insert(key, profile.preferences.clone()).await;
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
        read_through(&self.templates, "templates", template_id, load).await
    }

    async fn take_quota(
        &self,
        counter: &QuotaCounter,
        notification_id: &str,
        limit: u32,
    ) -> Result<bool, DirectoryError> {
        self.inner.take_quota(counter, notification_id, limit).await
    }

    async fn deactivate_token(
        &self,
        platform: Platform,
        token: &str,
    ) -> Result<u64, DirectoryError> {
        let changed = self.inner.deactivate_token(platform, token).await?;
        if changed > 0 {
            // The token's owners are not known here; dead tokens are rare enough to drop
            // every cached device list rather than keep targeting a dead one for a TTL.
            self.devices.invalidate_all();
        }
        Ok(changed)
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

        // One table dropped by a write through the cache: read again on its own.
        cached
            .set_preference(
                "u",
                Preference { category: "security".into(), channel: "sms".into(), opted_in: true },
            )
            .await
            .unwrap();
        let mixed = cached.profile("u").await.unwrap().unwrap();
        assert_eq!(mixed.user, first.user, "still cached");
        assert_eq!(mixed.preferences.len(), 2, "read again");
    }
}
