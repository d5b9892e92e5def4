//! Tansu, a Kafka-protocol broker, run as a child process for `herald dev` and the tests.
//! A child process (rather than the embeddable crate) can be killed and restarted, and it
//! does not take over the process's signal handlers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::admin;

use crate::engines::free_port;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "the Tansu broker is not installed (looked at $HERALD_TANSU_BIN, ~/.cache/herald, $PATH and ~/.cargo/bin); install it with infra/install-tansu.sh"
    )]
    NotInstalled,
    #[error("cannot start Tansu ({binary}): {source}")]
    Spawn { binary: PathBuf, source: std::io::Error },
    #[error("cannot prepare the broker's data directory: {0}")]
    DataDir(std::io::Error),
    #[error("cannot find a free port for the broker: {0}")]
    Port(std::io::Error),
    #[error("Tansu exited ({status}): is port {port} taken?")]
    Exited { port: u16, status: std::process::ExitStatus },
    #[error("Tansu started but does not answer: {0}")]
    NotReady(#[from] admin::AdminError),
}

/// Where `infra/install-tansu.sh` installs Tansu with Herald's patches (`infra/tansu/`),
/// under the home directory; the two name the same version and patch level.
const PATCHED: &str = ".cache/herald/tansu-0.6.0-p1/bin/tansu";

/// Where the Tansu binary is: `$HERALD_TANSU_BIN`, then the patched build
/// `infra/install-tansu.sh` makes, then `tansu` on `$PATH`, then `~/.cargo/bin/tansu` (an
/// unpatched `cargo install tansu`: its groups may never form again after a broker stall).
pub fn tansu_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HERALD_TANSU_BIN").map(PathBuf::from) {
        return path.is_file().then_some(path);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let patched = home.as_ref().map(|home| home.join(PATCHED)).filter(|path| path.is_file());
    let on_path = || {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .map(|dir| dir.join("tansu"))
            .find(|candidate| candidate.is_file())
    };
    patched.or_else(on_path).or_else(|| {
        let candidate = home?.join(".cargo/bin/tansu");
        candidate.is_file().then_some(candidate)
    })
}

/// Producers for Tansu keep one request in flight per connection instead of being
/// idempotent, unless the configuration chose otherwise.
///
/// Tansu 0.6.0 answers a connection's requests one at a time, so the five requests an
/// idempotent producer may pipeline gain nothing; and librdkafka 2.12's idempotent producer
/// counts in-flight *messages* against its limit of five *requests*, so a request of five or
/// more records is its partition's only one, and while it is out and newer records wait
/// longer than `linger.ms`, the broker thread wakes without pause until the answer comes.
/// Against a broker taking milliseconds per produce that loop was most of a dispatcher's CPU.
/// One request in flight per connection keeps each partition's order through retries; what
/// idempotence adds, no duplicate record when a produce is retried after the broker wrote
/// it, the delivery ledger already absorbs (a duplicate channel message finds its delivery
/// claimed).
fn one_produce_request_in_flight(config: &mut KafkaConfig) {
    for (key, value) in
        [("enable.idempotence", "false"), ("max.in.flight.requests.per.connection", "1")]
    {
        config.producer_properties.entry(key.into()).or_insert_with(|| value.into());
    }
}

/// Where Tansu keeps its log.
#[derive(Debug, Clone)]
pub enum Storage {
    /// SQLite (libsql) in this directory. Correct for any producer. Tansu 0.6.0 has no index
    /// on its record headers, so that each record fetched scanned every header ever stored;
    /// [`TansuBroker::start`] adds one (see [`index_record_headers`]).
    Sqlite(PathBuf),
    /// In memory: fast at any volume, but Tansu 0.6.0 counts a multi-record batch as one
    /// offset and returns nothing for a fetch that starts inside a batch, so a consumer
    /// resuming from a committed offset there stalls. Usable only when every producer writes
    /// one record per batch, which [`TansuBroker::kafka_config`] then sets
    /// (`batch.num.messages=1`).
    Memory,
}

/// The broker storage a command line chooses (see [`Storage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerStorage {
    /// Every role writes one record per batch (see [`Storage::Memory`]).
    Memory,
    /// Correct for any producer, batching allowed.
    Sqlite,
}

impl BrokerStorage {
    /// The storage, kept under `dir` when it is on disk.
    pub fn in_dir(self, dir: &Path) -> Storage {
        match self {
            BrokerStorage::Memory => Storage::Memory,
            BrokerStorage::Sqlite => Storage::Sqlite(dir.join("broker")),
        }
    }
}

const SQLITE_FILE: &str = "tansu.db";

/// Tansu 0.6.0's SQLite schema keys `header` by nothing, and its fetch looks up the headers
/// of each record it returns by (topition, offset_id): a scan of every header stored, so a
/// fetch costs more the longer the log (`herald dev` slowed several times over within
/// minutes of sending). An index on that pair
/// makes the lookup a search. Tansu creates its tables before it answers, and
/// SQLite lets a second process add an index to a live database.
fn index_record_headers(database: &Path) -> rusqlite::Result<()> {
    let connection = rusqlite::Connection::open(database)?;
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.execute_batch(
        "CREATE INDEX IF NOT EXISTS herald_header_by_record ON header (topition, offset_id)",
    )
}

/// A running Tansu broker. Killed when dropped.
#[derive(Debug)]
pub struct TansuBroker {
    child: tokio::process::Child,
    port: u16,
    storage: Storage,
}

impl TansuBroker {
    /// Starts Tansu on `port` (a free one if `None`) with `storage`, logging to `log`
    /// (discarded if `None`), and waits until it answers metadata requests.
    pub async fn start(
        port: Option<u16>,
        storage: Storage,
        log: Option<&Path>,
    ) -> Result<Self, BrokerError> {
        let binary = tansu_binary().ok_or(BrokerError::NotInstalled)?;
        let port = match port {
            Some(port) => port,
            None => free_port().map_err(BrokerError::Port)?,
        };
        let url = format!("tcp://127.0.0.1:{port}");
        let output = || -> Stdio {
            log.and_then(|path| {
                std::fs::OpenOptions::new().create(true).append(true).open(path).ok()
            })
            .map_or_else(Stdio::null, Stdio::from)
        };
        let mut command = tokio::process::Command::new(&binary);
        command.args(["broker", "--listener-url", &url, "--advertised-listener-url", &url]);
        // Not Herald's RUST_LOG: at `info` Tansu logs every span of every request, gigabytes
        // an hour under load.
        let filter = std::env::var("HERALD_TANSU_LOG").unwrap_or_else(|_| "warn".into());
        command.env("RUST_LOG", filter);
        match &storage {
            Storage::Sqlite(dir) => {
                std::fs::create_dir_all(dir).map_err(BrokerError::DataDir)?;
                // Tansu resolves a sqlite:// path against its working directory.
                command
                    .args(["--storage-engine", &format!("sqlite://{SQLITE_FILE}")])
                    .current_dir(dir);
            }
            Storage::Memory => {
                command.args(["--storage-engine", "memory://tansu/"]);
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(output())
            .stderr(output())
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C in the terminal must reach Herald only, which
            // drains its consumers and then stops the broker, not the broker first.
            .process_group(0)
            .spawn()
            .map_err(|source| BrokerError::Spawn { binary: binary.clone(), source })?;
        let mut broker = Self { child, port, storage };
        // Listening first: a Kafka client's first try would log a refused connection as
        // an error, in the first lines a new user of `herald dev` reads.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err()
            && tokio::time::Instant::now() < deadline
            && matches!(broker.child.try_wait(), Ok(None))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        admin::wait_until_reachable(&broker.kafka_config(), Duration::from_secs(30)).await?;
        // What answered may be another broker on that port, this one having exited because
        // the port was taken after all.
        if let Ok(Some(status)) = broker.child.try_wait() {
            return Err(BrokerError::Exited { port, status });
        }
        if let Storage::Sqlite(dir) = &broker.storage {
            // Slow, not wrong, without it: a broker that runs is better than none.
            if let Err(e) = index_record_headers(&dir.join(SQLITE_FILE)) {
                tracing::warn!(error = %e, "cannot index the broker's record headers; its fetches slow down as its log grows");
            }
        }
        Ok(broker)
    }

    /// The broker process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A Kafka configuration for this broker with the short group timings Tansu needs.
    pub fn kafka_config(&self) -> KafkaConfig {
        let mut config = KafkaConfig::default().with_dev_timings();
        self.point_at_this_broker(&mut config);
        config
    }

    /// Points `config` at this broker, with the producer settings its storage needs.
    pub fn point_at_this_broker(&self, config: &mut KafkaConfig) {
        config.bootstrap_servers = self.bootstrap_servers();
        if matches!(self.storage, Storage::Memory) {
            config.producer_properties.insert("batch.num.messages".into(), "1".into());
        }
        one_produce_request_in_flight(config);
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_for_tansu_keep_one_request_in_flight_instead_of_idempotence() {
        let mut config = KafkaConfig::default();
        one_produce_request_in_flight(&mut config);
        assert_eq!(config.producer_properties["enable.idempotence"], "false");
        assert_eq!(config.producer_properties["max.in.flight.requests.per.connection"], "1");
    }

    #[test]
    fn producer_properties_from_the_configuration_win_over_the_tansu_choice() {
        let mut config = KafkaConfig::default();
        config.producer_properties.insert("enable.idempotence".into(), "true".into());
        one_produce_request_in_flight(&mut config);
        assert_eq!(config.producer_properties["enable.idempotence"], "true");
        assert_eq!(config.producer_properties["max.in.flight.requests.per.connection"], "1");
    }
}
