//! The directory the configuration names: the one place that asks which backend.

use herald_runtime::scylla::ScyllaSetupError;
use herald_runtime::sqlite::SqliteError;

use super::scylla::ScyllaDirectory;
use super::sqlite::SqliteDirectory;
use super::{
    Device, Directory, DirectoryError, Platform, Preference, Profile, QuotaCounter,
    TemplateVariant, User,
};
use crate::config::{DirectoryBackend, EnricherConfig};

#[derive(Debug)]
pub enum AnyDirectory {
    Sqlite(SqliteDirectory),
    /// Boxed: its prepared statements make it large.
    Scylla(Box<ScyllaDirectory>),
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryOpenError {
    #[error("cannot open the directory at {path}")]
    Sqlite { path: String, source: SqliteError },
    #[error("cannot open the directory in ScyllaDB")]
    Scylla(#[from] ScyllaSetupError),
}

impl AnyDirectory {
    /// The directory of `[enricher]`: its SQLite file, or its ScyllaDB keyspace (whose
    /// tables `herald migrate` creates).
    pub async fn open(config: &EnricherConfig) -> Result<Self, DirectoryOpenError> {
        Ok(match config.directory_backend {
            DirectoryBackend::Sqlite => {
                let path = config.directory_path.display().to_string();
                let directory = SqliteDirectory::open(&config.directory_path)
                    .map_err(|source| DirectoryOpenError::Sqlite { path, source })?;
                Self::Sqlite(directory)
            }
            DirectoryBackend::Scylla => {
                Self::Scylla(Box::new(ScyllaDirectory::connect(&config.scylla).await?))
            }
        })
    }
}

/// `directory.method(args)` on whichever backend it is.
macro_rules! on_backend {
    ($directory:expr, $method:ident ( $($arg:expr),* )) => {
        match $directory {
            AnyDirectory::Sqlite(directory) => directory.$method($($arg),*).await,
            AnyDirectory::Scylla(directory) => directory.$method($($arg),*).await,
        }
    };
}

impl Directory for AnyDirectory {
    async fn upsert_user(&self, user: User) -> Result<(), DirectoryError> {
        on_backend!(self, upsert_user(user))
    }
    async fn upsert_device(&self, user_id: &str, device: Device) -> Result<(), DirectoryError> {
        on_backend!(self, upsert_device(user_id, device))
    }
    async fn set_preference(
        &self,
        user_id: &str,
        preference: Preference,
    ) -> Result<(), DirectoryError> {
        on_backend!(self, set_preference(user_id, preference))
    }
    async fn put_template(
        &self,
        template_id: &str,
        variants: Vec<TemplateVariant>,
    ) -> Result<(), DirectoryError> {
        on_backend!(self, put_template(template_id, variants))
    }
    async fn user(&self, user_id: &str) -> Result<Option<User>, DirectoryError> {
        on_backend!(self, user(user_id))
    }
    async fn devices(&self, user_id: &str) -> Result<Vec<Device>, DirectoryError> {
        on_backend!(self, devices(user_id))
    }
    async fn preferences(&self, user_id: &str) -> Result<Vec<Preference>, DirectoryError> {
        on_backend!(self, preferences(user_id))
    }
    async fn profile(&self, user_id: &str) -> Result<Option<Profile>, DirectoryError> {
        on_backend!(self, profile(user_id))
    }
    async fn template(&self, template_id: &str) -> Result<Vec<TemplateVariant>, DirectoryError> {
        on_backend!(self, template(template_id))
    }
    async fn take_quota(
        &self,
        counter: &QuotaCounter,
        notification_id: &str,
        limit: u32,
    ) -> Result<bool, DirectoryError> {
        on_backend!(self, take_quota(counter, notification_id, limit))
    }
    async fn token_owners(
        &self,
        platform: Platform,
        token: &str,
    ) -> Result<Vec<(String, String)>, DirectoryError> {
        on_backend!(self, token_owners(platform, token))
    }
    async fn register_device(
        &self,
        user_id: &str,
        device: Device,
    ) -> Result<Vec<(String, String)>, DirectoryError> {
        on_backend!(self, register_device(user_id, device))
    }
    async fn ensure_user(&self, user_id: &str) -> Result<(), DirectoryError> {
        on_backend!(self, ensure_user(user_id))
    }
    async fn remove_device(&self, user_id: &str, device_id: &str) -> Result<bool, DirectoryError> {
        on_backend!(self, remove_device(user_id, device_id))
    }
    async fn delete_user(&self, user_id: &str) -> Result<bool, DirectoryError> {
        on_backend!(self, delete_user(user_id))
    }
    async fn delete_template(&self, template_id: &str) -> Result<bool, DirectoryError> {
        on_backend!(self, delete_template(template_id))
    }
    async fn template_ids(&self) -> Result<Vec<String>, DirectoryError> {
        on_backend!(self, template_ids())
    }
    async fn progress(&self) -> Result<Vec<(String, i32, i64)>, DirectoryError> {
        on_backend!(self, progress())
    }
    async fn set_progress(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), DirectoryError> {
        on_backend!(self, set_progress(topic, partition, next_offset))
    }
}
