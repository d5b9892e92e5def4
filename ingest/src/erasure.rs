//! Erasing a user from what ingest keeps: a consumer of `herald.directory.changes` (group
//! `herald-ingest-erasure`) that, for each user erased (a record without a value, or a
//! `delete_user` change), erases the events naming them from the status store. The enricher
//! erases the directory itself; this is ingest's share, whoever wrote the erasure.

use std::sync::Arc;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{ConsumerSpec, Handler, HandlerError, Message, OwnedMessage, consumer};
use herald_schemas::{AvroCodec, DirectoryChange, DirectoryOp};
use tokio_util::sync::CancellationToken;

use crate::status::StatusStore;

pub const GROUP: &str = "ingest-erasure";

struct Erasure {
    status: StatusStore,
    codec: Arc<AvroCodec>,
}

impl Handler for Erasure {
    async fn handle(&self, record: &OwnedMessage) -> Result<(), HandlerError> {
        let Some(user_id) = record.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            return Ok(());
        };
        let erased = match record.payload().filter(|p| !p.is_empty()) {
            None => true,
            Some(payload) => match self.codec.decode::<DirectoryChange>(Some(payload)).await {
                Ok(change) => change.op == DirectoryOp::DeleteUser && change.user_id == user_id,
                Err(e) if e.is_retryable() => return Err(HandlerError::new(e)),
                // The enricher's applier dead-letters it; nothing of it is applied here either.
                Err(_) => false,
            },
        };
        if erased {
            let events = self.status.erase_user(user_id).await.map_err(HandlerError::new)?;
            tracing::info!(events, "erased a user's notification events");
        }
        Ok(())
    }
}

/// Runs until `shutdown` is cancelled.
pub async fn run(
    kafka: &KafkaConfig,
    status: StatusStore,
    codec: Arc<AvroCodec>,
    shutdown: CancellationToken,
) -> Result<(), consumer::ConsumerError> {
    let group = kafka.group(GROUP);
    let spec = ConsumerSpec {
        group_id: group.clone(),
        topics: vec![kafka.topics().directory_changes()],
        client_id: group,
    };
    consumer::run(kafka, spec, Arc::new(Erasure { status, codec }), shutdown).await
}
