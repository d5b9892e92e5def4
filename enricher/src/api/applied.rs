//! Waiting for the applier: a directory API write is answered once the enricher applied it
//! (so that a read, and any send, made after the answer sees it). The store says how far
//! each partition is applied; one task per process reads it every few milliseconds while
//! someone waits, for everyone waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::directory::Directory;

const POLL: Duration = Duration::from_millis(2);

pub(crate) struct Applied<D> {
    store: Arc<D>,
    known: Mutex<HashMap<(String, i32), i64>>,
    version: watch::Sender<u64>,
    waiting: AtomicUsize,
    wake: Notify,
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<D: Directory> Applied<D> {
    pub(crate) fn start(store: Arc<D>) -> Arc<Self> {
        let applied = Arc::new(Self {
            store,
            known: Mutex::default(),
            version: watch::Sender::new(0),
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
        });
        tokio::spawn(poll(Arc::downgrade(&applied)));
        applied
    }

    /// Whether the record at `offset` of `topic`'s `partition` was applied within `wait`.
    pub(crate) async fn wait(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        wait: Duration,
    ) -> bool {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        self.wake.notify_one();
        let mut version = self.version.subscribe();
        let applied = async {
            loop {
                version.borrow_and_update();
                let next = self
                    .known
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&(topic.to_owned(), partition))
                    .copied();
                if next.is_some_and(|next| next > offset) {
                    return true;
                }
                if version.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(wait, applied).await.unwrap_or(false)
    }
}

async fn poll<D: Directory>(applied: Weak<Applied<D>>) {
    loop {
        let Some(this) = applied.upgrade() else { return };
        if this.waiting.load(Ordering::Acquire) == 0 {
            // Asleep until someone waits; awake now and then to notice being dropped.
            let _ = tokio::time::timeout(Duration::from_secs(1), this.wake.notified()).await;
            continue;
        }
        match this.store.progress().await {
            Ok(rows) => {
                let mut known = this.known.lock().unwrap_or_else(|p| p.into_inner());
                for (topic, partition, next) in rows {
                    let at = known.entry((topic, partition)).or_insert(next);
                    *at = (*at).max(next);
                }
                drop(known);
                this.version.send_modify(|v| *v += 1);
            }
            Err(e) => tracing::warn!(error = %e, "reading how far the directory is applied"),
        }
        drop(this);
        tokio::time::sleep(POLL).await;
    }
}
