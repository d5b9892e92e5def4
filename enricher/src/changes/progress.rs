//! How far the applier got, per partition: told to this process's freshness at once, and
//! written to the store for the other enrichers and the directory API, a few times a second
//! per partition at most.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::apply::Progress;
use crate::directory::Directory;
use crate::freshness::Freshness;

/// How long a partition's progress waits to be written with its next moves.
const WRITE_EVERY: Duration = Duration::from_millis(5);

#[derive(Debug)]
pub struct Reporter {
    freshness: Option<Freshness>,
    moves: mpsc::UnboundedSender<(String, i32, i64)>,
}

impl Progress for Reporter {
    fn applied(&self, topic: &str, partition: i32, next: i64) {
        if let Some(freshness) = &self.freshness {
            freshness.applied(topic, partition, next);
        }
        let _ = self.moves.send((topic.to_owned(), partition, next));
    }
}

/// A reporter, and the task writing what it reports to `store` until the reporter is
/// dropped (after the applier's last drain), what is left included.
pub fn reporter<D: Directory>(
    store: Arc<D>,
    freshness: Option<Freshness>,
) -> (Reporter, tokio::task::JoinHandle<()>) {
    let (moves, received) = mpsc::unbounded_channel();
    let task = tokio::spawn(write(store, received));
    (Reporter { freshness, moves }, task)
}

async fn write<D: Directory>(
    store: Arc<D>,
    mut received: mpsc::UnboundedReceiver<(String, i32, i64)>,
) {
    let mut latest: HashMap<(String, i32), i64> = HashMap::new();
    let mut written: HashMap<(String, i32), i64> = HashMap::new();
    let mut batch = Vec::new();
    loop {
        let stopping = received.recv_many(&mut batch, 4096).await == 0;
        // What arrives meanwhile joins this write.
        if !stopping {
            tokio::time::sleep(WRITE_EVERY).await;
        }
        while let Ok(moved) = received.try_recv() {
            batch.push(moved);
        }
        for (topic, partition, next) in batch.drain(..) {
            let at = latest.entry((topic, partition)).or_insert(next);
            *at = (*at).max(next);
        }
        for (key, next) in &latest {
            if written.get(key) == Some(next) {
                continue;
            }
            match store.set_progress(&key.0, key.1, *next).await {
                Ok(()) => {
                    written.insert(key.clone(), *next);
                }
                Err(e) => {
                    tracing::warn!(topic = %key.0, partition = key.1, error = %e, "writing how far the directory is applied")
                }
            }
        }
        if stopping {
            return;
        }
    }
}
