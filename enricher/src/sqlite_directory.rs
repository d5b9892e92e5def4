//! The embedded directory: SQLite, one file owned by the enricher.

use std::path::PathBuf;

use herald_runtime::sqlite::{SqliteError, SqlitePool};
use rusqlite::{OptionalExtension, params};

use crate::directory::{Device, Directory, DirectoryError, Platform, Preference, User};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    user_id  TEXT PRIMARY KEY,
    email    TEXT,
    phone    TEXT,
    locale   TEXT,
    timezone TEXT,
    region   TEXT
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
";

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
        Ok(Self { pool: SqlitePool::open(path, SCHEMA)? })
    }

    pub async fn upsert_user(&self, user: User) -> Result<(), DirectoryError> {
        self.pool
            .run(move |c| {
                c.execute(
                    "INSERT INTO users (user_id, email, phone, locale, timezone, region)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (user_id) DO UPDATE SET email = ?2, phone = ?3, locale = ?4,
                        timezone = ?5, region = ?6",
                    params![
                        user.user_id,
                        user.email,
                        user.phone,
                        user.locale,
                        user.timezone,
                        user.region
                    ],
                )
            })
            .await
            .map(drop)
            .map_err(unavailable)
    }

    pub async fn upsert_device(&self, user_id: &str, device: Device) -> Result<(), DirectoryError> {
        let user_id = user_id.to_owned();
        self.pool
            .run(move |c| {
                c.execute(
                    "INSERT INTO devices (user_id, device_id, platform, token, app_id, active)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (user_id, device_id) DO UPDATE SET platform = ?3, token = ?4,
                        app_id = ?5, active = ?6",
                    params![
                        user_id,
                        device.device_id,
                        device.platform.as_str(),
                        device.token,
                        device.app_id,
                        device.active
                    ],
                )
            })
            .await
            .map(drop)
            .map_err(unavailable)
    }

    pub async fn set_preference(
        &self,
        user_id: &str,
        preference: Preference,
    ) -> Result<(), DirectoryError> {
        let user_id = user_id.to_owned();
        self.pool
            .run(move |c| {
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
}

impl Directory for SqliteDirectory {
    async fn user(&self, user_id: &str) -> Result<Option<User>, DirectoryError> {
        let user_id = user_id.to_owned();
        self.pool
            .run(move |c| {
                c.prepare_cached(
                    "SELECT user_id, email, phone, locale, timezone, region FROM users WHERE user_id = ?1",
                )?
                .query_row([user_id], |row| {
                    Ok(User {
                        user_id: row.get(0)?,
                        email: row.get(1)?,
                        phone: row.get(2)?,
                        locale: row.get(3)?,
                        timezone: row.get(4)?,
                        region: row.get(5)?,
                    })
                })
                .optional()
            })
            .await
            .map_err(unavailable)
    }

    async fn devices(&self, user_id: &str) -> Result<Vec<Device>, DirectoryError> {
        let owner = user_id.to_owned();
        let rows = self
            .pool
            .run(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT device_id, platform, token, app_id, active FROM devices
                     WHERE user_id = ?1 ORDER BY device_id",
                )?;
                let rows = statement.query_map([owner], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, bool>(4)?,
                    ))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|(device_id, platform, token, app_id, active)| {
                let platform = platform.parse::<Platform>().map_err(|reason| {
                    DirectoryError::Malformed { user_id: user_id.to_owned(), reason }
                })?;
                Ok(Device { device_id, platform, token, app_id, active })
            })
            .collect()
    }

    async fn deactivate_token(
        &self,
        platform: Platform,
        token: &str,
    ) -> Result<u64, DirectoryError> {
        let token = token.to_owned();
        self.pool
            .run(move |c| {
                c.execute(
                    "UPDATE devices SET active = 0 WHERE platform = ?1 AND token = ?2 AND active = 1",
                    params![platform.as_str(), token],
                )
            })
            .await
            .map(|changed| changed as u64)
            .map_err(unavailable)
    }

    async fn preferences(&self, user_id: &str) -> Result<Vec<Preference>, DirectoryError> {
        let user_id = user_id.to_owned();
        self.pool
            .run(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT category, channel, opted_in FROM preferences WHERE user_id = ?1",
                )?;
                let rows = statement.query_map([user_id], |row| {
                    Ok(Preference {
                        category: row.get(0)?,
                        channel: row.get(1)?,
                        opted_in: row.get(2)?,
                    })
                })?;
                rows.collect()
            })
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDirectory::open(dir.path().join("d.db")).unwrap();
        let user = User {
            user_id: "u1".into(),
            email: Some("u1@example.com".into()),
            phone: Some("+14155550100".into()),
            locale: Some("en-US".into()),
            timezone: None,
            region: Some("US".into()),
        };
        db.upsert_user(user.clone()).await.unwrap();
        let device = Device {
            device_id: "d1".into(),
            platform: Platform::Ios,
            token: "ab".repeat(32),
            app_id: Some("com.example".into()),
            active: true,
        };
        db.upsert_device("u1", device.clone()).await.unwrap();
        let pref =
            Preference { category: "marketing".into(), channel: "email".into(), opted_in: false };
        db.set_preference("u1", pref.clone()).await.unwrap();

        assert_eq!(db.user("u1").await.unwrap(), Some(user));
        assert_eq!(db.user("nobody").await.unwrap(), None);
        assert_eq!(db.devices("u1").await.unwrap(), vec![device]);
        assert_eq!(db.preferences("u1").await.unwrap(), vec![pref]);

        assert_eq!(
            db.deactivate_token(Platform::Android, &"ab".repeat(32)).await.unwrap(),
            0,
            "other platform"
        );
        assert_eq!(db.deactivate_token(Platform::Ios, &"ab".repeat(32)).await.unwrap(), 1);
        assert!(!db.devices("u1").await.unwrap()[0].active);
    }
}
