//! The production ledger: ScyllaDB, lightweight transactions (`IF NOT EXISTS`, `IF state =
//! 'claimed'`) so two processes can never both be granted one delivery, rows with a TTL of
//! the replay window. Every statement on the table is a lightweight transaction: mixing
//! LWT and plain writes on one partition is unsafe.

use std::time::Duration;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::{Claim, Completion, DeliveryKey, DeliveryLedger, LedgerError, claim_is_stale};
use herald_runtime::scylla::{
    LwtAnswer, LwtError, ScyllaConfig, ScyllaSetupError, apply_cql, execute_lwt,
};

const TABLE_CQL: &str = include_str!("../../../schemas/cql/dispatchers.cql");

#[derive(Debug)]
pub struct ScyllaLedger {
    session: Session,
    ttl_secs: i32,
    insert: PreparedStatement,
    take_over: PreparedStatement,
    complete: PreparedStatement,
    release: PreparedStatement,
}

fn unavailable(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

impl ScyllaLedger {
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
        Self::new(session, &keyspace, retention).await.map_err(|e| ScyllaSetupError::Connect {
            nodes: config.nodes.clone(),
            reason: e.to_string(),
        })
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
        let complete = prepare(format!(
            "UPDATE {table} USING TTL ? SET state = ?, updated_at = ? WHERE {key} IF EXISTS"
        ))
        .await?;
        let release =
            prepare(format!("DELETE FROM {table} WHERE {key} IF state = 'claimed'")).await?;
        let ttl_secs = i32::try_from(retention.as_secs()).unwrap_or(i32::MAX).max(1);
        Ok(Self { session, ttl_secs, insert, take_over, complete, release })
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
        match taken.text("state").and_then(Completion::parse) {
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
            self.ttl_secs,
            completion.as_str(),
            now,
            &key.notification_id,
            &key.channel,
            &key.target,
        );
        let answer = self.execute(&self.complete, values).await?;
        if answer.applied {
            return Ok(());
        }
        // The entry expired or was never claimed (a completion without claim): record it.
        let inserted = self
            .execute(
                &self.insert,
                (&key.notification_id, &key.channel, &key.target, now, now, self.ttl_secs),
            )
            .await?;
        if inserted.applied {
            let answer = self.execute(&self.complete, values).await?;
            if answer.applied {
                return Ok(());
            }
        }
        Err(LedgerError::Unavailable("completion raced with another writer; retry".into()))
    }

    async fn release(&self, key: &DeliveryKey) -> Result<(), LedgerError> {
        self.execute(&self.release, (&key.notification_id, &key.channel, &key.target))
            .await
            .map(drop)
    }
}
