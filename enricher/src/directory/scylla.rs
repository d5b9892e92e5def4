//! The production directory: ScyllaDB (`schemas/cql/enricher.cql`), every statement prepared
//! once at start-up, every lookup one partition read.

use scylla::DeserializeRow;
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
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
    clear_template: PreparedStatement,
    devices_by_token: PreparedStatement,
    device_token: PreparedStatement,
    quota_use: PreparedStatement,
    count_quota: PreparedStatement,
    unindex_device: PreparedStatement,
    remove_device: PreparedStatement,
    remove_devices: PreparedStatement,
    ensure_user: PreparedStatement,
    remove_preferences: PreparedStatement,
    remove_quota: PreparedStatement,
    remove_user: PreparedStatement,
    remove_template: PreparedStatement,
    template_ids: PreparedStatement,
    progress: PreparedStatement,
    set_progress: PreparedStatement,
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
    /// The tables `herald migrate` creates, as CQL with a `{keyspace}` placeholder.
    pub const CQL: &str = TABLES_CQL;

    /// Creates the directory's tables if needed (the keyspace must exist: `herald migrate`).
    pub async fn create_tables(session: &Session, keyspace: &str) -> Result<(), DirectoryError> {
        apply_cql(session, TABLES_CQL, keyspace).await.map_err(unavailable)
    }

    pub async fn connect(config: &ScyllaConfig) -> Result<Self, ScyllaSetupError> {
        let session = config.connect().await?;
        let keyspace = config.keyspace()?.to_owned();
        Self::new(session, &keyspace).await.map_err(|e| config.connect_error(e.to_string()))
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
                 VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            clear_template: prepare(format!(
                "DELETE FROM {k}.templates USING TIMESTAMP ? WHERE template_id = ?"
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
            quota_use: prepare(format!(
                "INSERT INTO {k}.quota_by_user (user_id, category, channel, day, notification_id)
                 VALUES (?, ?, ?, ?, ?) USING TTL 172800"
            ))
            .await?,
            count_quota: prepare(format!(
                "SELECT notification_id FROM {k}.quota_by_user
                 WHERE user_id = ? AND category = ? AND channel = ? AND day = ?"
            ))
            .await?,
            unindex_device: prepare(format!(
                "DELETE FROM {k}.devices_by_token
                 WHERE platform = ? AND \"token\" = ? AND user_id = ? AND device_id = ?"
            ))
            .await?,
            remove_device: prepare(format!(
                "DELETE FROM {k}.devices WHERE user_id = ? AND device_id = ?"
            ))
            .await?,
            remove_devices: prepare(format!("DELETE FROM {k}.devices WHERE user_id = ?")).await?,
            // A write of the key alone: the row exists afterwards, its other columns untouched.
            ensure_user: prepare(format!("INSERT INTO {k}.users (user_id) VALUES (?)")).await?,
            remove_preferences: prepare(format!("DELETE FROM {k}.preferences WHERE user_id = ?"))
                .await?,
            remove_quota: prepare(format!("DELETE FROM {k}.quota_by_user WHERE user_id = ?"))
                .await?,
            remove_user: prepare(format!("DELETE FROM {k}.users WHERE user_id = ?")).await?,
            remove_template: prepare(format!("DELETE FROM {k}.templates WHERE template_id = ?"))
                .await?,
            template_ids: prepare(format!("SELECT DISTINCT template_id FROM {k}.templates"))
                .await?,
            progress: prepare(format!(
                "SELECT topic, \"partition\", next_offset FROM {k}.directory_progress
                 WHERE scope = 'applied'"
            ))
            .await?,
            set_progress: prepare(format!(
                "INSERT INTO {k}.directory_progress (scope, topic, \"partition\", next_offset)
                 VALUES ('applied', ?, ?, ?)"
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

impl ScyllaDirectory {
    async fn device(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> Result<Option<DeviceRow>, DirectoryError> {
        let rows: Vec<DeviceRow> =
            self.rows(&self.statements.device_token, (user_id, device_id)).await?;
        Ok(rows.into_iter().next())
    }
}

/// The values of one statement of a template's batch.
type VariantValues =
    (String, String, String, Option<String>, Option<String>, String, Option<String>, i64);

enum TemplateValues {
    Clear((i64, String)),
    Variant(VariantValues),
}

impl scylla::serialize::row::SerializeRow for TemplateValues {
    fn serialize(
        &self,
        ctx: &scylla::serialize::row::RowSerializationContext<'_>,
        writer: &mut scylla::serialize::writers::RowWriter<'_>,
    ) -> Result<(), scylla::errors::SerializationError> {
        match self {
            Self::Clear(values) => values.serialize(ctx, writer),
            Self::Variant(values) => values.serialize(ctx, writer),
        }
    }

    fn is_empty(&self) -> bool {
        false
    }
}

#[derive(DeserializeRow)]
struct ProgressRow {
    topic: String,
    partition: i32,
    next_offset: i64,
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
        let before = self.device(user_id, &device.device_id).await?;
        // The index first: a device the index misses would never lose a token that moved.
        let index = (platform, &device.token, user_id, &device.device_id);
        self.write(&self.statements.index_device, index).await?;
        let values =
            (user_id, &device.device_id, platform, &device.token, &device.app_id, device.active);
        self.write(&self.statements.upsert_device, values).await?;
        // A token the device no longer carries leaves the index: it is the user's data.
        if let Some(old) =
            before.filter(|old| old.token != device.token || old.platform != platform)
        {
            let key = (&old.platform, &old.token, user_id, &device.device_id);
            self.write(&self.statements.unindex_device, key).await?;
        }
        Ok(())
    }

    async fn set_preference(
        &self,
        user_id: &str,
        preference: Preference,
    ) -> Result<(), DirectoryError> {
        let values = (user_id, preference.category, preference.channel, preference.opted_in);
        self.write(&self.statements.set_preference, values).await
    }

    /// One logged batch on the template's partition: applied at once, isolated from
    /// readers. The removal of the old variants is written a microsecond before the new ones,
    /// so that it does not take them too.
    async fn put_template(
        &self,
        template_id: &str,
        variants: Vec<TemplateVariant>,
    ) -> Result<(), DirectoryError> {
        let mut batch = Batch::new(BatchType::Logged);
        let at = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros(),
        )
        .unwrap_or(i64::MAX - 1);
        batch.append_statement(self.statements.clear_template.clone());
        let mut values: Vec<TemplateValues> =
            vec![TemplateValues::Clear((at, template_id.to_owned()))];
        for v in variants {
            batch.append_statement(self.statements.upsert_template.clone());
            values.push(TemplateValues::Variant((
                template_id.to_owned(),
                v.locale,
                v.channel,
                v.subject,
                v.title,
                v.body,
                v.html,
                at + 1,
            )));
        }
        self.session.batch(&batch, values).await.map(drop).map_err(unavailable)
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

    async fn token_owners(
        &self,
        platform: Platform,
        token: &str,
    ) -> Result<Vec<(String, String)>, DirectoryError> {
        let owners: Vec<TokenOwnerRow> =
            self.rows(&self.statements.devices_by_token, (platform.as_str(), token)).await?;
        let mut carrying = Vec::new();
        for owner in owners {
            let device = self.device(&owner.user_id, &owner.device_id).await?;
            if device.is_some_and(|d| d.token == token && d.platform == platform.as_str()) {
                carrying.push((owner.user_id, owner.device_id));
            }
        }
        Ok(carrying)
    }

    async fn register_device(
        &self,
        user_id: &str,
        device: Device,
    ) -> Result<Vec<(String, String)>, DirectoryError> {
        self.ensure_user(user_id).await?;
        let mut others = self.token_owners(device.platform, &device.token).await?;
        others.retain(|(owner, id)| owner != user_id || *id != device.device_id);
        self.upsert_device(user_id, device).await?;
        Ok(others)
    }

    async fn ensure_user(&self, user_id: &str) -> Result<(), DirectoryError> {
        self.write(&self.statements.ensure_user, (user_id,)).await
    }

    async fn remove_device(&self, user_id: &str, device_id: &str) -> Result<bool, DirectoryError> {
        let Some(device) = self.device(user_id, device_id).await? else { return Ok(false) };
        self.write(&self.statements.remove_device, (user_id, device_id)).await?;
        let key = (&device.platform, &device.token, user_id, device_id);
        self.write(&self.statements.unindex_device, key).await?;
        Ok(true)
    }

    /// Index rows first, while the devices still say which they are; each statement is
    /// idempotent, so an erasure interrupted half-way is finished by applying it again.
    async fn delete_user(&self, user_id: &str) -> Result<bool, DirectoryError> {
        let devices: Vec<DeviceRow> = self.rows(&self.statements.devices, (user_id,)).await?;
        for device in &devices {
            let key = (&device.platform, &device.token, user_id, &device.device_id);
            self.write(&self.statements.unindex_device, key).await?;
        }
        let existed = self.user(user_id).await?.is_some();
        self.write(&self.statements.remove_devices, (user_id,)).await?;
        self.write(&self.statements.remove_preferences, (user_id,)).await?;
        self.write(&self.statements.remove_quota, (user_id,)).await?;
        self.write(&self.statements.remove_user, (user_id,)).await?;
        Ok(existed)
    }

    async fn delete_template(&self, template_id: &str) -> Result<bool, DirectoryError> {
        let existed = !self.template(template_id).await?.is_empty();
        self.write(&self.statements.remove_template, (template_id,)).await?;
        Ok(existed)
    }

    async fn template_ids(&self) -> Result<Vec<String>, DirectoryError> {
        let rows: Vec<(String,)> = self.rows(&self.statements.template_ids, ()).await?;
        let mut ids: Vec<String> = rows.into_iter().map(|(id,)| id).collect();
        ids.sort();
        Ok(ids)
    }

    async fn progress(&self) -> Result<Vec<(String, i32, i64)>, DirectoryError> {
        let rows: Vec<ProgressRow> = self.rows(&self.statements.progress, ()).await?;
        Ok(rows.into_iter().map(|r| (r.topic, r.partition, r.next_offset)).collect())
    }

    async fn set_progress(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), DirectoryError> {
        self.write(&self.statements.set_progress, (topic, partition, next_offset)).await
    }
}
