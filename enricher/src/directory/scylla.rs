//! The production directory: ScyllaDB (`schemas/cql/enricher.cql`), every statement prepared
//! once at start-up, every lookup one partition read.

use scylla::DeserializeRow;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use herald_runtime::scylla::{ScyllaConfig, ScyllaSetupError, apply_cql, select};

use crate::directory::{
    Device, Directory, DirectoryError, Platform, Preference, QuotaCounter, TemplateVariant, User,
};

const TABLES_CQL: &str = include_str!("../../../schemas/cql/enricher.cql");

fn unavailable(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
}

#[derive(Debug)]
struct Statements {
    user: PreparedStatement,
    devices: PreparedStatement,
    preferences: PreparedStatement,
    template: PreparedStatement,
    upsert_user: PreparedStatement,
    upsert_device: PreparedStatement,
    index_device: PreparedStatement,
    set_preference: PreparedStatement,
    upsert_template: PreparedStatement,
    devices_by_token: PreparedStatement,
    device_token: PreparedStatement,
    deactivate: PreparedStatement,
    quota_use: PreparedStatement,
    count_quota: PreparedStatement,
}

#[derive(Debug)]
pub struct ScyllaDirectory {
    session: Session,
    statements: Statements,
}

#[derive(DeserializeRow)]
struct UserRow {
    user_id: String,
    email: Option<String>,
    phone: Option<String>,
    locale: Option<String>,
    timezone: Option<String>,
    region: Option<String>,
    quiet_hours: Option<String>,
}

#[derive(DeserializeRow)]
struct DeviceRow {
    device_id: String,
    platform: String,
    token: String,
    app_id: Option<String>,
    active: Option<bool>,
}

#[derive(DeserializeRow)]
struct PreferenceRow {
    category: String,
    channel: String,
    opted_in: Option<bool>,
}

#[derive(DeserializeRow)]
struct TemplateRow {
    template_id: String,
    locale: String,
    channel: String,
    subject: Option<String>,
    title: Option<String>,
    body: Option<String>,
    html: Option<String>,
}

#[derive(DeserializeRow)]
struct TokenOwnerRow {
    user_id: String,
    device_id: String,
}

impl ScyllaDirectory {
    /// Creates the directory's tables if needed (the keyspace must exist: `herald migrate`).
    pub async fn create_tables(session: &Session, keyspace: &str) -> Result<(), DirectoryError> {
        apply_cql(session, TABLES_CQL, keyspace).await.map_err(unavailable)
    }

    pub async fn connect(config: &ScyllaConfig) -> Result<Self, ScyllaSetupError> {
        let session = config.connect().await?;
        let keyspace = config.keyspace()?.to_owned();
        Self::new(session, &keyspace).await.map_err(|e| ScyllaSetupError::Connect {
            nodes: config.nodes.clone(),
            reason: e.to_string(),
        })
    }

    pub async fn new(session: Session, keyspace: &str) -> Result<Self, DirectoryError> {
        let prepare = |cql: String| {
            let session = &session;
            async move { session.prepare(cql).await.map_err(unavailable) }
        };
        let k = keyspace;
        let statements = Statements {
            user: prepare(format!(
                "SELECT user_id, email, phone, locale, timezone, region, quiet_hours FROM {k}.users
                 WHERE user_id = ?"
            ))
            .await?,
            devices: prepare(format!(
                "SELECT device_id, platform, \"token\", app_id, active FROM {k}.devices WHERE user_id = ?"
            ))
            .await?,
            preferences: prepare(format!(
                "SELECT category, channel, opted_in FROM {k}.preferences WHERE user_id = ?"
            ))
            .await?,
            template: prepare(format!(
                "SELECT template_id, locale, channel, subject, title, body, html FROM {k}.templates
                 WHERE template_id = ?"
            ))
            .await?,
            upsert_user: prepare(format!(
                "INSERT INTO {k}.users (user_id, email, phone, locale, timezone, region, quiet_hours)
                 VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            upsert_device: prepare(format!(
                "INSERT INTO {k}.devices (user_id, device_id, platform, \"token\", app_id, active)
                 VALUES (?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            index_device: prepare(format!(
                "INSERT INTO {k}.devices_by_token (platform, \"token\", user_id, device_id)
                 VALUES (?, ?, ?, ?)"
            ))
            .await?,
            set_preference: prepare(format!(
                "INSERT INTO {k}.preferences (user_id, category, channel, opted_in)
                 VALUES (?, ?, ?, ?)"
            ))
            .await?,
            upsert_template: prepare(format!(
                "INSERT INTO {k}.templates (template_id, locale, channel, subject, title, body, html)
                 VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            devices_by_token: prepare(format!(
                "SELECT user_id, device_id FROM {k}.devices_by_token WHERE platform = ? AND \"token\" = ?"
            ))
            .await?,
            device_token: prepare(format!(
                "SELECT device_id, platform, \"token\", app_id, active FROM {k}.devices
                 WHERE user_id = ? AND device_id = ?"
            ))
            .await?,
            deactivate: prepare(format!(
                "UPDATE {k}.devices SET active = false WHERE user_id = ? AND device_id = ?"
            ))
            .await?,
            quota_use: prepare(format!(
                "INSERT INTO {k}.quota_use (user_id, category, channel, day, notification_id)
                 VALUES (?, ?, ?, ?, ?) USING TTL 172800"
            ))
            .await?,
            count_quota: prepare(format!(
                "SELECT notification_id FROM {k}.quota_use
                 WHERE user_id = ? AND category = ? AND channel = ? AND day = ?"
            ))
            .await?,
        };
        Ok(Self { session, statements })
    }

    async fn write(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<(), DirectoryError> {
        self.session.execute_unpaged(statement, values).await.map(drop).map_err(unavailable)
    }

    async fn rows<R>(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<R>, DirectoryError>
    where
        R: for<'frame, 'metadata> scylla::deserialize::row::DeserializeRow<'frame, 'metadata>,
    {
        select(&self.session, statement, values).await.map_err(unavailable)
    }
}

fn device(user_id: &str, row: DeviceRow) -> Result<Device, DirectoryError> {
    let platform = row
        .platform
        .parse::<Platform>()
        .map_err(|reason| DirectoryError::Malformed { user_id: user_id.to_owned(), reason })?;
    Ok(Device {
        device_id: row.device_id,
        platform,
        token: row.token,
        app_id: row.app_id,
        active: row.active.unwrap_or(true),
    })
}

impl Directory for ScyllaDirectory {
    async fn upsert_user(&self, user: User) -> Result<(), DirectoryError> {
        let values = (
            user.user_id,
            user.email,
            user.phone,
            user.locale,
            user.timezone,
            user.region,
            user.quiet_hours,
        );
        self.write(&self.statements.upsert_user, values).await
    }

    async fn upsert_device(&self, user_id: &str, device: Device) -> Result<(), DirectoryError> {
        let platform = device.platform.as_str();
        // The index first: a device the index misses could never be deactivated.
        let index = (platform, &device.token, user_id, &device.device_id);
        self.write(&self.statements.index_device, index).await?;
        let values =
            (user_id, &device.device_id, platform, &device.token, &device.app_id, device.active);
        self.write(&self.statements.upsert_device, values).await
    }

    async fn set_preference(
        &self,
        user_id: &str,
        preference: Preference,
    ) -> Result<(), DirectoryError> {
        let values = (user_id, preference.category, preference.channel, preference.opted_in);
        self.write(&self.statements.set_preference, values).await
    }

    async fn upsert_template(&self, v: TemplateVariant) -> Result<(), DirectoryError> {
        let values = (v.template_id, v.locale, v.channel, v.subject, v.title, v.body, v.html);
        self.write(&self.statements.upsert_template, values).await
    }

    async fn user(&self, user_id: &str) -> Result<Option<User>, DirectoryError> {
        let rows: Vec<UserRow> = self.rows(&self.statements.user, (user_id,)).await?;
        Ok(rows.into_iter().next().map(|r| User {
            user_id: r.user_id,
            email: r.email,
            phone: r.phone,
            locale: r.locale,
            timezone: r.timezone,
            region: r.region,
            quiet_hours: r.quiet_hours,
        }))
    }

    async fn devices(&self, user_id: &str) -> Result<Vec<Device>, DirectoryError> {
        let rows: Vec<DeviceRow> = self.rows(&self.statements.devices, (user_id,)).await?;
        rows.into_iter().map(|row| device(user_id, row)).collect()
    }

    async fn preferences(&self, user_id: &str) -> Result<Vec<Preference>, DirectoryError> {
        let rows: Vec<PreferenceRow> = self.rows(&self.statements.preferences, (user_id,)).await?;
        Ok(rows
            .into_iter()
            .map(|r| Preference {
                category: r.category,
                channel: r.channel,
                opted_in: r.opted_in.unwrap_or(true),
            })
            .collect())
    }

    async fn template(&self, template_id: &str) -> Result<Vec<TemplateVariant>, DirectoryError> {
        let rows: Vec<TemplateRow> = self.rows(&self.statements.template, (template_id,)).await?;
        Ok(rows
            .into_iter()
            .map(|r| TemplateVariant {
                template_id: r.template_id,
                locale: r.locale,
                channel: r.channel,
                subject: r.subject,
                title: r.title,
                body: r.body.unwrap_or_default(),
                html: r.html,
            })
            .collect())
    }

    async fn take_quota(
        &self,
        counter: &QuotaCounter,
        notification_id: &str,
        limit: u32,
    ) -> Result<bool, DirectoryError> {
        let key = (&counter.user_id, &counter.category, &counter.channel, &counter.day);
        // Read, then write: only the enricher owning the user's partition writes these rows.
        let used: Vec<(String,)> = self.rows(&self.statements.count_quota, key).await?;
        if used.iter().any(|(id,)| id == notification_id) {
            return Ok(true);
        }
        if used.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            return Ok(false);
        }
        let values = (key.0, key.1, key.2, key.3, notification_id);
        self.write(&self.statements.quota_use, values).await?;
        Ok(true)
    }

    async fn deactivate_token(
        &self,
        platform: Platform,
        token: &str,
    ) -> Result<u64, DirectoryError> {
        let owners: Vec<TokenOwnerRow> =
            self.rows(&self.statements.devices_by_token, (platform.as_str(), token)).await?;
        let mut deactivated = 0;
        for owner in owners {
            let key = (&owner.user_id, &owner.device_id);
            let rows: Vec<DeviceRow> = self.rows(&self.statements.device_token, key).await?;
            // The index keeps old tokens: only a device that still carries this one, on this
            // platform, and is active is deactivated.
            let still_carries = rows.iter().any(|d| {
                d.token == token && d.platform == platform.as_str() && d.active.unwrap_or(true)
            });
            if still_carries {
                self.write(&self.statements.deactivate, key).await?;
                deactivated += 1;
            }
        }
        Ok(deactivated)
    }
}
