//! A broker that stops answering for longer than a group's session, then comes back.

use std::time::Duration;

use super::{Fixture, eventually, recorder};

/// The broker process frozen (SIGSTOP) for twice the group's session, then resumed, as in a
/// stalled host: the member loses its session, rejoins by itself and consumes what is
/// produced afterwards, with no restart. On Tansu, `herald dev`'s broker, whose 0.6.0 group
/// coordinator kept an expired leader and so never formed the group again
/// (`infra/tansu/`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_stall_longer_than_the_session_the_member_rejoins_and_consumes_again() {
    let f = Fixture::on_own_tansu(2).await;
    let kafka = f.kafka();
    let session = Duration::from_millis(kafka.consumer.session_timeout_ms.into());
    let (seen, behaviour) = recorder();
    let (stop, task) = f.start(kafka, "g-stall", behaviour);
    f.produce(&[("a", "before-1"), ("b", "before-2")]).await;
    eventually("the records before the stall are handled", || seen.lock().unwrap().len() == 2)
        .await;

    let broker = f.broker.pids()[0];
    let signal = |name: &str| herald_testkit::signal(broker, name).unwrap();
    signal("-STOP");
    tokio::time::sleep(session * 2).await;
    signal("-CONT");
    f.produce(&[("a", "after-1"), ("b", "after-2")]).await;
    eventually("the records after the stall are handled", || {
        let seen = seen.lock().unwrap();
        seen.iter().any(|p| p == "after-1") && seen.iter().any(|p| p == "after-2")
    })
    .await;
    stop.cancel();
    task.await.unwrap();
}
