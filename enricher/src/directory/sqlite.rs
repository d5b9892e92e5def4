//! The embedded directory: SQLite, one file owned by the enricher.

use std::path::PathBuf;

use herald_runtime::sqlite::{SqliteError, SqlitePool};
use rusqlite::{OptionalExtension, params};

use crate::directory::{
    Device, Directory, DirectoryError, Platform, Preference, Profile, QuotaCounter,
    TemplateVariant, User,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    user_id  TEXT PRIMARY KEY,
    email    TEXT,
    phone    TEXT,
    locale   TEXT,
    timezone TEXT,
    region   TEXT,
    quiet_hours TEXT
);
CREATE TABLE IF NOT EXISTS devices (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    platform  TEXT NOT NULL,
    token     TEXT NOT NULL,
    app_id    TEXT,
    active    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE IF NOT EXISTS preferences (
    user_id  TEXT NOT NULL,
    category TEXT NOT NULL,
    channel  TEXT NOT NULL,
    opted_in INTEGER NOT NULL,
    PRIMARY KEY (user_id, category, channel)
);
CREATE TABLE IF NOT EXISTS quota_use (
    user_id         TEXT NOT NULL,
    category        TEXT NOT NULL,
    channel         TEXT NOT NULL,
    day             TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    PRIMARY KEY (user_id, category, channel, day, notification_id)
);
CREATE TABLE IF NOT EXISTS templates (
    template_id TEXT NOT NULL,
    locale      TEXT NOT NULL,
    channel     TEXT NOT NULL,
    subject     TEXT,
    title       TEXT,
    body        TEXT NOT NULL,
    html        TEXT,
    PRIMARY KEY (template_id, locale, channel)
);
CREATE INDEX IF NOT EXISTS devices_by_token ON devices (platform, token);
CREATE TABLE IF NOT EXISTS directory_progress (
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
";

/// Columns added after the first release, for directories created before them.
const ADDED_COLUMNS: [&str; 1] = ["ALTER TABLE users ADD COLUMN quiet_hours TEXT"];

#[derive(Debug, Clone)]
pub struct SqliteDirectory {
    pool: SqlitePool,
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(unavailable)`
fn unavailable(e: SqliteError) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
}

impl SqliteDirectory {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SqliteError> {
        Ok(Self { pool: SqlitePool::open_with_added_columns(path, SCHEMA, &ADDED_COLUMNS)? })
    }

    /// Writes many users and their devices in one transaction: loading a benchmark's or a
    /// migration's directory without a round trip per row.
    pub async fn load(&self, rows: Vec<(User, Vec<Device>)>) -> Result<(), DirectoryError> {
        self.pool
            .run(move |c| {
                let tx = c.transaction()?;
                for (user, devices) in &rows {
                    write_user(&tx, user)?;
                    for device in devices {
                        write_device(&tx, &user.user_id, device)?;
                    }
                }
                tx.commit()
            })
            .await
            .map_err(unavailable)
    }
}

fn write_user(c: &rusqlite::Connection, user: &User) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "INSERT INTO users (user_id, email, phone, locale, timezone, region, quiet_hours)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (user_id) DO UPDATE SET email = ?2, phone = ?3, locale = ?4,
            timezone = ?5, region = ?6, quiet_hours = ?7",
    )?
    .execute(params![
        user.user_id,
        user.email,
        user.phone,
        user.locale,
        user.timezone,
        user.region,
        user.quiet_hours
    ])
}

fn write_device(
    c: &rusqlite::Connection,
    user_id: &str,
    device: &Device,
) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "INSERT INTO devices (user_id, device_id, platform, token, app_id, active)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (user_id, device_id) DO UPDATE SET platform = ?3, token = ?4,
            app_id = ?5, active = ?6",
    )?
    .execute(params![
        user_id,
        device.device_id,
        device.platform.as_str(),
        device.token,
        device.app_id,
        device.active
    ])
}

impl Directory for SqliteDirectory {
    async fn upsert_user(&self, user: User) -> Result<(), DirectoryError> {
        self.pool.write(move |c| write_user(c, &user)).await.map(drop).map_err(unavailable)
    }

    async fn upsert_device(&self, user_id: &str, device: Device) -> Result<(), DirectoryError> {
        let user_id = user_id.to_owned();
        let write = move |c: &rusqlite::Connection| write_device(c, &user_id, &device);
        self.pool.write(write).await.map(drop).map_err(unavailable)
    }

    async fn set_preference(
        &self,
        user_id: &str,
        preference: Preference,
    ) -> Result<(), DirectoryError> {
        let user_id = user_id.to_owned();
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO preferences (user_id, category, channel, opted_in) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user_id, category, channel) DO UPDATE SET opted_in = ?4",
                    params![user_id, preference.category, preference.channel, preference.opted_in],
                )
            })
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn put_template(
        &self,
        template_id: &str,
        variants: Vec<TemplateVariant>,
    ) -> Result<(), DirectoryError> {
        let template_id = template_id.to_owned();
        self.pool
            // One savepoint: readers see the template before or after, whole.
            .write(move |c| {
                c.execute("DELETE FROM templates WHERE template_id = ?1", [&template_id])?;
                let mut insert = c.prepare_cached(
                    "INSERT INTO templates (template_id, locale, channel, subject, title, body, html)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for v in &variants {
                    insert.execute(params![
                        template_id, v.locale, v.channel, v.subject, v.title, v.body, v.html
                    ])?;
                }
                Ok(())
            })
            .await
            .map_err(unavailable)
    }

    async fn template(&self, template_id: &str) -> Result<Vec<TemplateVariant>, DirectoryError> {
        let template_id = template_id.to_owned();
        self.pool
            .run(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT template_id, locale, channel, subject, title, body, html FROM templates
                     WHERE template_id = ?1 ORDER BY locale, channel",
                )?;
                let rows = statement.query_map([template_id], |row| {
                    Ok(TemplateVariant {
                        template_id: row.get(0)?,
                        locale: row.get(1)?,
                        channel: row.get(2)?,
                        subject: row.get(3)?,
                        title: row.get(4)?,
                        body: row.get(5)?,
                        html: row.get(6)?,
                    })
                })?;
                rows.collect()
            })
            .await
            .map_err(unavailable)
    }

    async fn user(&self, user_id: &str) -> Result<Option<User>, DirectoryError> {
        let user_id = user_id.to_owned();
        self.pool.run(move |c| read_user(c, &user_id)).await.map_err(unavailable)
    }

    async fn devices(&self, user_id: &str) -> Result<Vec<Device>, DirectoryError> {
        let owner = user_id.to_owned();
        let rows = self.pool.run(move |c| read_devices(c, &owner)).await.map_err(unavailable)?;
        devices(user_id, rows)
    }

    async fn take_quota(
        &self,
        counter: &QuotaCounter,
        notification_id: &str,
        limit: u32,
    ) -> Result<bool, DirectoryError> {
        let counter = counter.clone();
        let notification_id = notification_id.to_owned();
        self.pool
            // One transaction (the write's savepoint): counted against the limit atomically.
            .write(move |c| {
                // Earlier days' counts are of no use: dropped as the user's next day starts.
                c.execute(
                    "DELETE FROM quota_use WHERE user_id = ?1 AND day < ?2",
                    params![counter.user_id, counter.day],
                )?;
                let row = (
                    &counter.user_id,
                    &counter.category,
                    &counter.channel,
                    &counter.day,
                    &notification_id,
                );
                let (used, counted): (u32, bool) = c.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(notification_id = ?5), 0) > 0 FROM quota_use
                     WHERE user_id = ?1 AND category = ?2 AND channel = ?3 AND day = ?4",
                    row,
                    |found| Ok((found.get(0)?, found.get(1)?)),
                )?;
                if counted {
                    return Ok(true);
                }
                if used >= limit {
                    return Ok(false);
                }
                c.execute(
                    "INSERT INTO quota_use (user_id, category, channel, day, notification_id)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    row,
                )?;
                Ok(true)
            })
            .await
            .map_err(unavailable)
    }

    async fn token_owners(
        &self,
        platform: Platform,
        token: &str,
    ) -> Result<Vec<(String, String)>, DirectoryError> {
        let token = token.to_owned();
        self.pool
            .run(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT user_id, device_id FROM devices WHERE platform = ?1 AND token = ?2
                     ORDER BY user_id, device_id",
                )?;
                let rows = statement.query_map(params![platform.as_str(), token], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
                rows.collect()
            })
            .await
            .map_err(unavailable)
    }

    /// One savepoint: the user made sure of, the token's other carriers found, the device
    /// written.
    async fn register_device(
        &self,
        user_id: &str,
        device: Device,
    ) -> Result<Vec<(String, String)>, DirectoryError> {
        let user_id = user_id.to_owned();
        self.pool
            .write(move |c| {
                c.prepare_cached("INSERT OR IGNORE INTO users (user_id) VALUES (?1)")?
                    .execute([&user_id])?;
                let mut carriers = c.prepare_cached(
                    "SELECT user_id, device_id FROM devices WHERE platform = ?1 AND token = ?2
                     AND NOT (user_id = ?3 AND device_id = ?4) ORDER BY user_id, device_id",
                )?;
                let others = carriers
                    .query_map(
                        params![device.platform.as_str(), device.token, user_id, device.device_id],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )?
                    .collect::<rusqlite::Result<Vec<(String, String)>>>()?;
                write_device(c, &user_id, &device)?;
                Ok(others)
            })
            .await
            .map_err(unavailable)
    }

    async fn ensure_user(&self, user_id: &str) -> Result<(), DirectoryError> {
        let user_id = user_id.to_owned();
        self.pool
            .write(move |c| {
                c.execute("INSERT OR IGNORE INTO users (user_id) VALUES (?1)", [user_id])
            })
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn remove_device(&self, user_id: &str, device_id: &str) -> Result<bool, DirectoryError> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.pool
            .write(move |c| {
                c.execute(
                    "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
                    params![user_id, device_id],
                )
            })
            .await
            .map(|removed| removed > 0)
            .map_err(unavailable)
    }

    async fn delete_user(&self, user_id: &str) -> Result<bool, DirectoryError> {
        let user_id = user_id.to_owned();
        self.pool
            // One savepoint: a user is erased whole or not at all.
            .write(move |c| {
                for table in ["devices", "preferences", "quota_use"] {
                    c.execute(&format!("DELETE FROM {table} WHERE user_id = ?1"), [&user_id])?;
                }
                c.execute("DELETE FROM users WHERE user_id = ?1", [&user_id])
            })
            .await
            .map(|removed| removed > 0)
            .map_err(unavailable)
    }

    async fn delete_template(&self, template_id: &str) -> Result<bool, DirectoryError> {
        let template_id = template_id.to_owned();
        self.pool
            .write(move |c| {
                c.execute("DELETE FROM templates WHERE template_id = ?1", [template_id])
            })
            .await
            .map(|removed| removed > 0)
            .map_err(unavailable)
    }

    async fn template_ids(&self) -> Result<Vec<String>, DirectoryError> {
        self.pool
            .run(|c| {
                let mut statement = c.prepare_cached(
                    "SELECT DISTINCT template_id FROM templates ORDER BY template_id",
                )?;
                let rows = statement.query_map([], |row| row.get(0))?;
                rows.collect()
            })
            .await
            .map_err(unavailable)
    }

    async fn progress(&self) -> Result<Vec<(String, i32, i64)>, DirectoryError> {
        self.pool
            .run(|c| {
                let mut statement = c.prepare_cached(
                    "SELECT topic, partition, next_offset FROM directory_progress",
                )?;
                let rows =
                    statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
                rows.collect()
            })
            .await
            .map_err(unavailable)
    }

    async fn set_progress(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), DirectoryError> {
        let topic = topic.to_owned();
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO directory_progress (topic, partition, next_offset)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (topic, partition) DO UPDATE SET next_offset = ?3",
                    params![topic, partition, next_offset],
                )
            })
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn preferences(&self, user_id: &str) -> Result<Vec<Preference>, DirectoryError> {
        let user_id = user_id.to_owned();
        self.pool.run(move |c| read_preferences(c, &user_id)).await.map_err(unavailable)
    }

    /// The three reads in one trip to the blocking pool: on a cold cache the hops between
    /// threads, not SQLite, were most of a lookup's cost.
    async fn profile(&self, user_id: &str) -> Result<Option<Profile>, DirectoryError> {
        let owner = user_id.to_owned();
        let read = self
            .pool
            .run(move |c| {
                let Some(user) = read_user(c, &owner)? else { return Ok(None) };
                Ok(Some((user, read_devices(c, &owner)?, read_preferences(c, &owner)?)))
            })
            .await
            .map_err(unavailable)?;
        let Some((user, device_rows, preferences)) = read else { return Ok(None) };
        Ok(Some(Profile { user, devices: devices(user_id, device_rows)?, preferences }))
    }
}

type DeviceRow = (String, String, String, Option<String>, bool);

fn read_user(c: &rusqlite::Connection, user_id: &str) -> rusqlite::Result<Option<User>> {
    c.prepare_cached(
        "SELECT user_id, email, phone, locale, timezone, region, quiet_hours FROM users
         WHERE user_id = ?1",
    )?
    .query_row([user_id], |row| {
        Ok(User {
            user_id: row.get(0)?,
            email: row.get(1)?,
            phone: row.get(2)?,
            locale: row.get(3)?,
            timezone: row.get(4)?,
            region: row.get(5)?,
            quiet_hours: row.get(6)?,
        })
    })
    .optional()
}

fn read_devices(c: &rusqlite::Connection, user_id: &str) -> rusqlite::Result<Vec<DeviceRow>> {
    let mut statement = c.prepare_cached(
        "SELECT device_id, platform, token, app_id, active FROM devices
         WHERE user_id = ?1 ORDER BY device_id",
    )?;
    let rows = statement.query_map([user_id], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
    })?;
    rows.collect()
}

fn devices(user_id: &str, rows: Vec<DeviceRow>) -> Result<Vec<Device>, DirectoryError> {
    rows.into_iter()
        .map(|(device_id, platform, token, app_id, active)| {
            let platform = platform.parse::<Platform>().map_err(|reason| {
                DirectoryError::Malformed { user_id: user_id.to_owned(), reason }
            })?;
            Ok(Device { device_id, platform, token, app_id, active })
        })
        .collect()
}

fn read_preferences(c: &rusqlite::Connection, user_id: &str) -> rusqlite::Result<Vec<Preference>> {
    let mut statement =
        c.prepare_cached("SELECT category, channel, opted_in FROM preferences WHERE user_id = ?1")?;
    let rows = statement.query_map([user_id], |row| {
        Ok(Preference { category: row.get(0)?, channel: row.get(1)?, opted_in: row.get(2)? })
    })?;
    rows.collect()
}
