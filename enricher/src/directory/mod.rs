//! The directory the enricher owns: users, their devices and their preferences. Behind a
//! trait so that the embedded SQLite store and ScyllaDB serve the same enricher.

pub mod scylla;
pub mod sqlite;

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

/// The enricher's reads, and the writes that `herald directory import`, the dev seed and the
/// dead-token events make. Every write is an upsert by the table's key: a re-run changes
/// nothing.
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
    fn upsert_template(
        &self,
        variant: TemplateVariant,
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
    /// Stops targeting a device token a provider reported dead; returns how many devices
    /// carried it.
    fn deactivate_token(
        &self,
        platform: Platform,
        token: &str,
    ) -> impl Future<Output = Result<u64, DirectoryError>> + Send;
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
