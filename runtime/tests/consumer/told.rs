//! What a handler is told of the offsets the runtime stores: each finished prefix, in order.

use super::*;

/// Tells the finished prefix as the runtime stores it; record "2" waits for a release.
struct Telling {
    told: Arc<Mutex<Vec<i64>>>,
    release: Arc<tokio::sync::Notify>,
}

impl Handler for Telling {
    async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError> {
        if payload(message) == "2" {
            self.release.notified().await;
        }
        Ok(())
    }

    fn finished_before(&self, _topic: &str, _partition: i32, next_offset: i64) {
        self.told.lock().unwrap().push(next_offset);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_is_told_each_finished_prefix_in_order_and_never_past_an_unfinished_record() {
    let f = Fixture::new(1).await;
    f.produce(&[("a", "0"), ("b", "1"), ("c", "2"), ("d", "3"), ("e", "4")]).await;
    let told = Arc::new(Mutex::new(Vec::new()));
    let release = Arc::new(tokio::sync::Notify::new());
    let handler = Arc::new(Telling { told: Arc::clone(&told), release: Arc::clone(&release) });
    let (stop, task) = f.start_handler(f.kafka(), "g-told", handler);
    eventually("the prefix before the held record is told", || {
        told.lock().unwrap().last() == Some(&2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(told.lock().unwrap().last(), Some(&2), "3 and 4 finished, 2 did not: not past it");
    release.notify_one();
    eventually("everything told", || told.lock().unwrap().last() == Some(&5)).await;
    stop.cancel();
    task.await.unwrap();
    let told = told.lock().unwrap().clone();
    assert!(told.windows(2).all(|w| w[0] <= w[1]), "in order: {told:?}");
}
