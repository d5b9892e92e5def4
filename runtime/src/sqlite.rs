//! SQLite set-up for the embedded stores: one file per role, WAL, a small connection pool
//! used from blocking threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("cannot open SQLite database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("SQLite query on {path} failed: {source}")]
    Query { path: PathBuf, source: rusqlite::Error },
    #[error("SQLite worker thread failed: {0}")]
    Worker(String),
}

/// A small pool of connections to one database file.
#[derive(Debug, Clone)]
pub struct SqlitePool {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// One per connection in use by [`SqlitePool::run`].
    permits: Arc<tokio::sync::Semaphore>,
}

/// Connections in use at once by async callers. A consumer may have thousands of records in
/// flight; unbounded, each would hold a blocking thread and open a connection of its own
/// (with its own page cache) while the writers queue behind one lock anyway.
const MAX_CONNECTIONS: usize = 16;

/// Connections kept open for reuse; opening one costs a file open and the pragmas.
const MAX_IDLE: usize = MAX_CONNECTIONS;

fn open(path: &Path) -> Result<Connection, SqliteError> {
    let wrap = |source| SqliteError::Open { path: path.to_owned(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            wrap(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(e.to_string()),
            ))
        })?;
    }
    let connection = Connection::open(path).map_err(wrap)?;
    connection.busy_timeout(Duration::from_secs(5)).map_err(wrap)?;
    // WAL lets readers proceed while one writer commits; NORMAL is durable across process
    // crashes (only an OS crash can lose the last transactions). Switching to WAL needs the
    // file to itself and SQLite answers "database is locked" at once, without waiting in
    // the busy handler, when another process opens the same file at that moment (two
    // dispatchers started together share a ledger file): so wait here.
    let pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;";
    while_busy(|| connection.execute_batch(pragmas)).map_err(wrap)?;
    Ok(connection)
}

/// Runs `statement` again while SQLite answers busy or locked without having waited in the
/// busy handler, for up to 5 s.
fn while_busy(mut statement: impl FnMut() -> rusqlite::Result<()>) -> rusqlite::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match statement() {
            Err(e) if is_busy(&e) && started.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl SqlitePool {
    /// Opens (creating if needed) the database and applies `schema` (idempotent DDL).
    pub fn open(path: impl Into<PathBuf>, schema: &str) -> Result<Self, SqliteError> {
        let path = path.into();
        let connection = open(&path)?;
        // The schema's DDL takes the write lock; the busy handler waits for it, except when
        // SQLite detects a possible deadlock.
        while_busy(|| connection.execute_batch(schema))
            .map_err(|source| SqliteError::Query { path: path.clone(), source })?;
        Ok(Self {
            path: Arc::new(path),
            idle: Arc::new(Mutex::new(vec![connection])),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
        })
    }

    /// Like [`SqlitePool::open`], then adds the columns of `added_columns` (`ALTER TABLE t
    /// ADD COLUMN ...`, columns added after a store's first release) where they are missing.
    pub fn open_with_added_columns(
        path: impl Into<PathBuf>,
        schema: &str,
        added_columns: &[&str],
    ) -> Result<Self, SqliteError> {
        let pool = Self::open(path, schema)?;
        pool.run_blocking(|c| {
            for statement in added_columns {
                match c.execute(statement, []) {
                    Ok(_) => {}
                    Err(e) if e.to_string().contains("duplicate column") => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
        Ok(pool)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` with a connection on a blocking thread.
    pub async fn run<T, F>(&self, work: F) -> Result<T, SqliteError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| SqliteError::Worker(e.to_string()))?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            pool.run_blocking(work)
        })
        .await
        .map_err(|e| SqliteError::Worker(e.to_string()))?
    }

    /// Runs `work` on the calling thread (for CLI commands and start-up).
    pub fn run_blocking<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SqliteError> {
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut connection = match taken {
            Some(c) => c,
            None => open(&self.path)?,
        };
        let result = work(&mut connection)
            .map_err(|source| SqliteError::Query { path: (*self.path).clone(), source });
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_opening_one_new_file_at_once_all_get_it() {
        let schema = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY);";
        // The race is narrow: several rounds, each on a new file.
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("shared.db");
            let opened: Vec<_> = (0..8)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || SqlitePool::open(path, schema).map(drop))
                })
                .collect();
            for handle in opened {
                handle.join().unwrap().unwrap();
            }
        }
    }
}
