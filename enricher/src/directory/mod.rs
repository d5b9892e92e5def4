//! The directory the enricher owns: users, their devices and their preferences. Behind a
//! trait so that the embedded SQLite store and ScyllaDB serve the same enricher.

mod any;
pub mod scylla;
pub mod sqlite;

pub use any::{AnyDirectory, DirectoryOpenError};

use std::fmt;
use std::str::FromStr;

/// One user's sends of one category on one requested channel on one day (the user's own
/// calendar day, `YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCounter {
    pub user_id: String,
    pub category: String,
    pub channel: String,
    pub day: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub user_id: String,
    pub email: Option<String>,
    /// E.164.
    pub phone: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub region: Option<String>,
    /// `HH:MM-HH:MM` in `timezone`: non-critical pushes and SMS wait until it ends.
    pub quiet_hours: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Ios,
    Android,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ios" => Ok(Platform::Ios),
            "android" => Ok(Platform::Android),
            other => Err(format!("unknown platform {other:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub device_id: String,
    pub platform: Platform,
    pub token: String,
    pub app_id: Option<String>,
    pub active: bool,
}

/// An explicit choice for one (category, channel); no row means opted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preference {
    pub category: String,
    /// A requested channel: email, sms or push.
    pub channel: String,
    pub opted_in: bool,
}

/// One channel's text of one template in one locale. `locale` is empty for the template's
/// default, used when no translation matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateVariant {
    pub template_id: String,
    pub locale: String,
    /// email, sms or push.
    pub channel: String,
    /// Email subject.
    pub subject: Option<String>,
    /// Push title.
    pub title: Option<String>,
    /// Email plain text, SMS text or push body.
    pub body: String,
    /// Email HTML.
    pub html: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory lookup failed: {0}")]
    Unavailable(String),
    #[error("directory holds a malformed row for user {user_id}: {reason}")]
    Malformed { user_id: String, reason: String },
}

/// The enricher's reads, and the writes its directory changes make (see
/// [`crate::changes`]); the dev seed and the benchmarks also write directly. Every write
/// is keyed like its table: applying a change again changes nothing.
pub trait Directory: Send + Sync + 'static {
    fn upsert_user(&self, user: User) -> impl Future<Output = Result<(), DirectoryError>> + Send;
    fn upsert_device(
        &self,
        user_id: &str,
        device: Device,
    ) -> impl Future<Output = Result<(), DirectoryError>> + Send;
    fn set_preference(
        &self,
        user_id: &str,
        preference: Preference,
    ) -> impl Future<Output = Result<(), DirectoryError>> + Send;
    /// Makes `variants` the whole of template `template_id`, at once: a reader sees the old
    /// template or the new one, never a mix or nothing.
    fn put_template(
        &self,
        template_id: &str,
        variants: Vec<TemplateVariant>,
    ) -> impl Future<Output = Result<(), DirectoryError>> + Send;
    fn user(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<Option<User>, DirectoryError>> + Send;
    fn devices(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<Device>, DirectoryError>> + Send;
    fn preferences(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<Preference>, DirectoryError>> + Send;
    /// A user with their devices and preferences; `None` for an unknown user. By default the
    /// three reads go out concurrently; a store that can answer them in one go does.
    fn profile(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<Option<Profile>, DirectoryError>> + Send {
        profile_from_parts(self, user_id)
    }
    /// Every locale and channel of one template; empty when the id is unknown.
    fn template(
        &self,
        template_id: &str,
    ) -> impl Future<Output = Result<Vec<TemplateVariant>, DirectoryError>> + Send;
    /// Counts `notification_id` against the quota `counter` allows per day, unless it is
    /// counted already (a redelivered request is not counted twice). False: the quota is used
    /// up and this notification is not counted. Only the enricher instance that owns the
    /// user's partition of `herald.requests` touches a user's counters.
    fn take_quota(
        &self,
        counter: &QuotaCounter,
        notification_id: &str,
        limit: u32,
    ) -> impl Future<Output = Result<bool, DirectoryError>> + Send;
    /// The devices (user id, device id) that carry `token` on `platform`, whoever they
    /// belong to.
    fn token_owners(
        &self,
        platform: Platform,
        token: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, DirectoryError>> + Send;
    /// Registers (or updates) a device of a user, creating the user empty if new; returns
    /// the other devices (user id, device id) that carry its token on its platform, which
    /// the caller takes the token from.
    fn register_device(
        &self,
        user_id: &str,
        device: Device,
    ) -> impl Future<Output = Result<Vec<(String, String)>, DirectoryError>> + Send;
    /// Makes sure a user exists, with no contact fields when new; an existing one is left
    /// as it is.
    fn ensure_user(&self, user_id: &str)
    -> impl Future<Output = Result<(), DirectoryError>> + Send;
    /// Removes one device of a user; false when there was none.
    fn remove_device(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<bool, DirectoryError>> + Send;
    /// Erases a user: the user, their devices, their preferences and their frequency-cap
    /// counts. False when there was no such user (whatever else was erased).
    fn delete_user(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<bool, DirectoryError>> + Send;
    /// Removes every variant of a template; false when there was none.
    fn delete_template(
        &self,
        template_id: &str,
    ) -> impl Future<Output = Result<bool, DirectoryError>> + Send;
    /// Every template id, in order.
    fn template_ids(&self) -> impl Future<Output = Result<Vec<String>, DirectoryError>> + Send;
    /// How far the enricher applied each partition of the topics that change the directory:
    /// (topic, partition, the next offset to apply).
    fn progress(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, i32, i64)>, DirectoryError>> + Send;
    /// Records that every record of `topic`'s `partition` before `next_offset` is applied.
    fn set_progress(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> impl Future<Output = Result<(), DirectoryError>> + Send;
}

/// A profile read as its three parts, concurrently; `None` for an unknown user.
pub async fn profile_from_parts<D: Directory + ?Sized>(
    directory: &D,
    user_id: &str,
) -> Result<Option<Profile>, DirectoryError> {
    let (user, devices, preferences) = tokio::join!(
        directory.user(user_id),
        directory.devices(user_id),
        directory.preferences(user_id)
    );
    let Some(user) = user? else { return Ok(None) };
    Ok(Some(Profile { user, devices: devices?, preferences: preferences? }))
}

/// Everything the fan-out needs to know about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub user: User,
    pub devices: Vec<Device>,
    pub preferences: Vec<Preference>,
}
