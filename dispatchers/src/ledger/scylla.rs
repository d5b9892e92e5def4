//! The production ledger: ScyllaDB or Cassandra. Claims are lightweight transactions
//! (`IF NOT EXISTS`, `IF state = 'claimed'`) so two processes can never both be granted one
//! delivery; the outcome goes to a table of its own with a plain write, so a delivery costs
//! one Paxos round, not two. Mixing lightweight transactions and plain writes on one
//! partition is unsafe (a plain write's timestamp may fall behind a Paxos ballot's and be
//! shadowed), hence two tables. Rows carry a TTL of the replay window.

use std::time::Duration;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::{Claim, Completion, DeliveryKey, DeliveryLedger, LedgerError, claim_is_stale};
use herald_runtime::scylla::{
    LwtAnswer, LwtError, ScyllaConfig, ScyllaSetupError, SelectError, apply_cql, execute_lwt,
    select,
};

const TABLE_CQL: &str = include_str!("../../../schemas/cql/dispatchers.cql");

#[derive(Debug)]
pub struct ScyllaLedger {
    session: Session,
    ttl_secs: i32,
    insert: PreparedStatement,
    take_over: PreparedStatement,
    complete: PreparedStatement,
    outcome: PreparedStatement,
    release: PreparedStatement,
}

fn unavailable(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

impl ScyllaLedger {
    /// The tables `herald migrate` creates, as CQL with a `{keyspace}` placeholder.
    pub const CQL: &str = TABLE_CQL;

    /// Creates the table if needed (the keyspace must exist: `herald migrate`).
    pub async fn create_table(session: &Session, keyspace: &str) -> Result<(), LedgerError> {
        apply_cql(session, TABLE_CQL, keyspace).await.map_err(unavailable)
    }

    pub async fn connect(
        config: &ScyllaConfig,
        retention: Duration,
    ) -> Result<Self, ScyllaSetupError> {
        let session = config.connect().await?;
        let keyspace = config.keyspace()?.to_owned();
        Self::new(session, &keyspace, retention)
            .await
            .map_err(|e| config.connect_error(e.to_string()))
    }

    pub async fn new(
        session: Session,
        keyspace: &str,
        retention: Duration,
    ) -> Result<Self, LedgerError> {
        let table = format!("{keyspace}.delivery_ledger");
        let key = "notification_id = ? AND channel = ? AND target = ?";
        let prepare = |cql: String| {
            let session = &session;
            async move { session.prepare(cql).await.map_err(unavailable) }
        };
        let insert = prepare(format!(
            "INSERT INTO {table} (notification_id, channel, target, state, claimed_at, updated_at)
             VALUES (?, ?, ?, 'claimed', ?, ?) IF NOT EXISTS USING TTL ?"
        ))
        .await?;
        let take_over = prepare(format!(
            "UPDATE {table} USING TTL ? SET claimed_at = ?, updated_at = ? WHERE {key}
             IF state = 'claimed' AND claimed_at = ?"
        ))
        .await?;
        let outcomes = format!("{keyspace}.delivery_outcomes");
        let complete = prepare(format!(
            "INSERT INTO {outcomes} (notification_id, channel, target, state, updated_at)
             VALUES (?, ?, ?, ?, ?) USING TTL ?"
        ))
        .await?;
        let outcome = prepare(format!("SELECT state FROM {outcomes} WHERE {key}")).await?;
        let release =
            prepare(format!("DELETE FROM {table} WHERE {key} IF state = 'claimed'")).await?;
        let ttl_secs = i32::try_from(retention.as_secs()).unwrap_or(i32::MAX).max(1);
        Ok(Self { session, ttl_secs, insert, take_over, complete, outcome, release })
    }

    async fn execute(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<LwtAnswer, LedgerError> {
        execute_lwt(&self.session, statement, values).await.map_err(|e| match e {
            LwtError::Execute(reason) => LedgerError::Unavailable(reason),
            LwtError::Unreadable(reason) => LedgerError::Corrupt(reason),
        })
    }

    /// The recorded outcome of a delivery, if its owner recorded one.
    async fn outcome(&self, key: &DeliveryKey) -> Result<Option<Completion>, LedgerError> {
        let rows: Vec<(Option<String>,)> =
            select(&self.session, &self.outcome, (&key.notification_id, &key.channel, &key.target))
                .await
                .map_err(|e| match e {
                    SelectError::Execute(reason) => LedgerError::Unavailable(reason),
                    SelectError::Rows(reason) => LedgerError::Corrupt(reason),
                })?;
        match rows.into_iter().next().and_then(|(state,)| state) {
            None => Ok(None),
            Some(state) => Completion::parse(&state)
                .map(Some)
                .ok_or_else(|| LedgerError::Corrupt(format!("unknown outcome {state:?}"))),
        }
    }
}

pub use herald_runtime::scylla::statements;

impl DeliveryLedger for ScyllaLedger {
    async fn claim(
        &self,
        key: &DeliveryKey,
        now: i64,
        claim_timeout: Duration,
    ) -> Result<Claim, LedgerError> {
        let ids = (&key.notification_id, &key.channel, &key.target);
        let inserted =
            self.execute(&self.insert, (ids.0, ids.1, ids.2, now, now, self.ttl_secs)).await?;
        if inserted.applied {
            return Ok(Claim::Granted { took_over: false });
        }
        let state = inserted.text("state").unwrap_or_default().to_owned();
        let claimed_at = inserted.bigint("claimed_at").unwrap_or_default();
        if let Some(done) = Completion::parse(&state) {
            return Ok(Claim::Done(done));
        }
        if state != "claimed" {
            return Err(LedgerError::Corrupt(format!("unknown state {state:?}")));
        }
        if let Some(done) = self.outcome(key).await? {
            return Ok(Claim::Done(done));
        }
        if !claim_is_stale(claimed_at, now, claim_timeout) {
            return Ok(Claim::Busy { claimed_at });
        }
        let taken = self
            .execute(&self.take_over, (self.ttl_secs, now, now, ids.0, ids.1, ids.2, claimed_at))
            .await?;
        if taken.applied {
            return Ok(Claim::Granted { took_over: true });
        }
        // Someone else took it over or completed it first.
        if let Some(done) = taken.text("state").and_then(Completion::parse) {
            return Ok(Claim::Done(done));
        }
        match self.outcome(key).await? {
            Some(done) => Ok(Claim::Done(done)),
            None => Ok(Claim::Busy { claimed_at: taken.bigint("claimed_at").unwrap_or(now) }),
        }
    }

    async fn complete(
        &self,
        key: &DeliveryKey,
        completion: Completion,
        now: i64,
    ) -> Result<(), LedgerError> {
        let values = (
            &key.notification_id,
            &key.channel,
            &key.target,
            completion.as_str(),
            now,
            self.ttl_secs,
        );
        self.session.execute_unpaged(&self.complete, values).await.map_err(unavailable)?;
        Ok(())
    }

    async fn release(&self, key: &DeliveryKey) -> Result<(), LedgerError> {
        self.execute(&self.release, (&key.notification_id, &key.channel, &key.target))
            .await
            .map(drop)
    }
}
