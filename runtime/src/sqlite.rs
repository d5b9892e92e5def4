//! SQLite set-up for the embedded stores: one file per role, WAL, a small connection pool
//! used from blocking threads, and one writer thread per pool that commits the writes queued
//! meanwhile together.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("cannot open SQLite database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("SQLite query on {path} failed: {source}")]
    Query { path: PathBuf, source: rusqlite::Error },
    #[error("SQLite worker thread failed: {0}")]
    Worker(String),
    #[error("SQLite transaction on {path} failed: {reason}")]
    Transaction { path: PathBuf, reason: String },
}

/// What a queued write does once its batch committed (or failed to).
type Finish = Box<dyn FnOnce(Result<(), &str>) + Send>;
/// A queued write: runs inside the batch's transaction (or learns why there is none).
type Job = Box<dyn FnOnce(Result<&mut Transaction<'_>, &str>) -> Finish + Send>;

/// Writes committed in one transaction at most.
const MAX_BATCH: usize = 256;

/// A small pool of connections to one database file.
#[derive(Debug, Clone)]
pub struct SqlitePool {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// One per connection in use by [`SqlitePool::run`].
    permits: Arc<tokio::sync::Semaphore>,
    /// The writer thread's queue, started by the first [`SqlitePool::write`].
    writer: Arc<OnceLock<mpsc::Sender<Job>>>,
}

/// Connections in use at once by async callers. A consumer may have thousands of records in
/// flight; unbounded, each would hold a blocking thread and open a connection of its own
/// with its own page cache, while writes go through the one writer anyway. More than this
/// raised the enricher's peak RSS (`herald bench enrich`) without more requests a second.
const MAX_CONNECTIONS: usize = 8;

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
    // cache_size -512: each connection's page cache (512 KiB, SQLite's default is 2 MiB) is
    // process memory, up to 9 connections a pool; the file's pages stay in the OS's cache
    // anyway, a read away.
    let pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; \
                   PRAGMA cache_size=-512;";
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
            writer: Arc::default(),
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

    /// Runs `work` in a transaction shared with the writes queued while the previous batch
    /// committed, and answers once that transaction committed: a commit (and its WAL
    /// frames, and the checkpoints they trigger) per batch rather than per write. Each
    /// write runs in a savepoint of its own, so one that fails leaves no trace and does not
    /// fail the others.
    pub async fn write<T, F>(&self, work: F) -> Result<T, SqliteError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let path = Arc::clone(&self.path);
        let job: Job = Box::new(move |batch| {
            let query_failed = {
                let path = Arc::clone(&path);
                move |source| SqliteError::Query { path: (*path).clone(), source }
            };
            let transaction_failed = move |reason: &str| SqliteError::Transaction {
                path: (*path).clone(),
                reason: reason.to_owned(),
            };
            let staged = match batch {
                Err(reason) => Err(transaction_failed(reason)),
                Ok(transaction) => in_savepoint(transaction, work).map_err(query_failed),
            };
            Box::new(move |committed| {
                let result = match (staged, committed) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(reason)) => Err(transaction_failed(reason)),
                };
                let _ = answer.send(result);
            })
        });
        let stopped =
            || SqliteError::Worker(format!("the writer of {} stopped", self.path.display()));
        self.writer().send(job).map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    fn writer(&self) -> &mpsc::Sender<Job> {
        self.writer.get_or_init(|| {
            let (jobs, queue) = mpsc::channel();
            let path = Arc::clone(&self.path);
            // Should the thread not start, the queue's receiver is gone and writes say so.
            let _ = std::thread::Builder::new()
                .name("sqlite-writer".into())
                .spawn(move || write_batches(&path, &queue));
            jobs
        })
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

fn in_savepoint<T>(
    transaction: &mut Transaction<'_>,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let savepoint = transaction.savepoint()?;
    // Dropped without commit on error: rolled back.
    let value = work(&savepoint)?;
    savepoint.commit()?;
    Ok(value)
}

/// The writer thread: until every pool handle is gone, takes the writes queued, runs them in
/// one transaction and answers each.
fn write_batches(path: &Path, queue: &mpsc::Receiver<Job>) {
    let mut connection = None;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        if connection.is_none() {
            match open(path).and_then(|opened| writer_cache(path, opened)) {
                Ok(opened) => connection = Some(opened),
                Err(e) => {
                    fail_all(batch, &e.to_string());
                    continue;
                }
            }
        }
        if let Some(connection) = connection.as_mut() {
            commit_batch(connection, batch);
        }
    }
}

/// The writer's page cache: every write of a store goes through this one connection, and
/// its index lookups (an upsert, a token's other carriers) read pages the small cache of
/// the readers would fetch from the OS again and again.
const WRITER_CACHE_KIB: i64 = 32 * 1024;

fn writer_cache(path: &Path, connection: Connection) -> Result<Connection, SqliteError> {
    connection
        .execute_batch(&format!("PRAGMA cache_size=-{WRITER_CACHE_KIB};"))
        .map_err(|source| SqliteError::Query { path: path.to_owned(), source })?;
    Ok(connection)
}

fn commit_batch(connection: &mut Connection, batch: Vec<Job>) {
    let mut transaction = match connection.transaction_with_behavior(TransactionBehavior::Immediate)
    {
        Ok(transaction) => transaction,
        Err(e) => return fail_all(batch, &e.to_string()),
    };
    let finishes: Vec<Finish> = batch.into_iter().map(|job| job(Ok(&mut transaction))).collect();
    let committed = transaction.commit().map_err(|e| e.to_string());
    let committed = committed.as_ref().map(drop).map_err(String::as_str);
    for finish in finishes {
        finish(committed);
    }
}

fn fail_all(batch: Vec<Job>, reason: &str) {
    for job in batch {
        job(Err(reason))(Err(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT);";

    fn count(pool: &SqlitePool, filter: &str) -> i64 {
        let query = format!("SELECT count(*) FROM t WHERE {filter}");
        pool.run_blocking(|c| c.query_row(&query, [], |row| row.get(0))).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_each_commit_and_answer_their_own_result() {
        let dir = tempfile::tempdir().unwrap();
        let pool = SqlitePool::open(dir.path().join("w.db"), SCHEMA).unwrap();
        let writes = (0..1_000_i64).map(|k| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.write(move |c| {
                    c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])?;
                    c.query_row("SELECT k * 2 FROM t WHERE k = ?1", [k], |row| row.get(0))
                })
                .await
            })
        });
        let answers: Vec<i64> = futures::future::join_all(writes)
            .await
            .into_iter()
            .map(|a| a.unwrap().unwrap())
            .collect();
        assert_eq!(answers, (0..1_000).map(|k| k * 2).collect::<Vec<_>>());
        // Committed once answered: another connection sees every row.
        assert_eq!(count(&pool, "v = 'x'"), 1_000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_leaves_no_trace_and_fails_no_other_write() {
        let dir = tempfile::tempdir().unwrap();
        let pool = SqlitePool::open(dir.path().join("w.db"), SCHEMA).unwrap();
        pool.write(|c| c.execute("INSERT INTO t (k, v) VALUES (0, 'taken')", [])).await.unwrap();
        let writes = (1..=200_i64).map(|k| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.write(move |c| {
                    c.execute("INSERT INTO t (k, v) VALUES (?1, 'half')", [k + 1_000])?;
                    // Every tenth write then breaks the primary key: its first row must go too.
                    let key = if k % 10 == 0 { 0 } else { k };
                    c.execute("INSERT INTO t (k, v) VALUES (?1, 'whole')", [key])
                })
                .await
            })
        });
        let results: Vec<_> =
            futures::future::join_all(writes).await.into_iter().map(|r| r.unwrap()).collect();
        let failed = results.iter().filter(|r| r.is_err()).count();
        assert_eq!(failed, 20, "only the writes that broke the key fail");
        assert!(matches!(results[9], Err(SqliteError::Query { .. })), "{:?}", results[9]);
        assert_eq!(count(&pool, "v = 'whole'"), 180);
        assert_eq!(count(&pool, "v = 'half'"), 180, "a failed write's first row is rolled back");
    }

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
