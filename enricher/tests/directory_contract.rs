//! One contract for every directory, written once: it runs against SQLite always and against
//! a CQL node (Apache Cassandra in CI, started by infra/test.sh; ScyllaDB in production).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use herald_enricher::ScyllaDirectory;
use herald_enricher::directory::QuotaCounter;
use herald_enricher::{
    Device, Directory, Platform, Preference, SqliteDirectory, TemplateVariant, User,
};

/// Unique per run: a shared ScyllaDB keeps rows between runs.
fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::now_v7())
}

async fn contract<D: Directory>(directory: &D) {
    users_read_back_and_upserts_replace(directory).await;
    devices_and_preferences_belong_to_their_user(directory).await;
    a_profile_is_the_user_with_their_devices_and_preferences(directory).await;
    a_dead_token_deactivates_only_the_devices_that_still_carry_it(directory).await;
    a_template_is_read_whole_every_locale_and_channel(directory).await;
    a_quota_counts_each_notification_once_per_user_category_channel_and_day(directory).await;
}

async fn a_quota_counts_each_notification_once_per_user_category_channel_and_day<D: Directory>(
    directory: &D,
) {
    let counter = QuotaCounter {
        user_id: unique("capped"),
        category: "marketing".into(),
        channel: "push".into(),
        day: "2026-11-26".into(),
    };
    assert!(directory.take_quota(&counter, "n1", 2).await.unwrap());
    assert!(directory.take_quota(&counter, "n1", 2).await.unwrap(), "n1 again: counted once");
    assert!(directory.take_quota(&counter, "n2", 2).await.unwrap());
    assert!(!directory.take_quota(&counter, "n3", 2).await.unwrap(), "the cap is 2");
    assert!(directory.take_quota(&counter, "n2", 2).await.unwrap(), "a counted one stays allowed");
    let sms = QuotaCounter { channel: "sms".into(), ..counter.clone() };
    assert!(directory.take_quota(&sms, "n3", 2).await.unwrap(), "per channel");
    let tomorrow = QuotaCounter { day: "2026-11-27".into(), ..counter.clone() };
    assert!(directory.take_quota(&tomorrow, "n3", 2).await.unwrap(), "per day");
}

async fn users_read_back_and_upserts_replace<D: Directory>(directory: &D) {
    let mut user = User {
        user_id: unique("u"),
        email: Some("u1@example.com".into()),
        phone: Some("+14155550100".into()),
        locale: Some("en-US".into()),
        timezone: Some("America/New_York".into()),
        region: Some("US".into()),
        quiet_hours: None,
    };
    directory.upsert_user(user.clone()).await.unwrap();
    assert_eq!(directory.user(&user.user_id).await.unwrap(), Some(user.clone()));
    user.email = None;
    user.region = Some("CN".into());
    directory.upsert_user(user.clone()).await.unwrap();
    directory.upsert_user(user.clone()).await.unwrap();
    assert_eq!(directory.user(&user.user_id).await.unwrap(), Some(user), "last write wins");
    assert_eq!(directory.user(&unique("nobody")).await.unwrap(), None);
}

async fn devices_and_preferences_belong_to_their_user<D: Directory>(directory: &D) {
    let (owner, other) = (unique("owner"), unique("other"));
    let device = Device {
        device_id: "phone".into(),
        platform: Platform::Ios,
        token: unique("tok"),
        app_id: Some("com.example".into()),
        active: true,
    };
    directory.upsert_device(&owner, device.clone()).await.unwrap();
    directory.upsert_device(&owner, device.clone()).await.unwrap();
    assert_eq!(directory.devices(&owner).await.unwrap(), vec![device]);
    assert!(directory.devices(&other).await.unwrap().is_empty());

    let opt_out =
        Preference { category: "marketing".into(), channel: "email".into(), opted_in: false };
    directory.set_preference(&owner, opt_out.clone()).await.unwrap();
    assert_eq!(directory.preferences(&owner).await.unwrap(), vec![opt_out.clone()]);
    let opt_in = Preference { opted_in: true, ..opt_out };
    directory.set_preference(&owner, opt_in.clone()).await.unwrap();
    assert_eq!(directory.preferences(&owner).await.unwrap(), vec![opt_in]);
    assert!(directory.preferences(&other).await.unwrap().is_empty());
}

async fn a_profile_is_the_user_with_their_devices_and_preferences<D: Directory>(directory: &D) {
    let id = unique("profiled");
    let user = User { user_id: id.clone(), email: Some("p@example.com".into()), ..User::default() };
    directory.upsert_user(user.clone()).await.unwrap();
    for (device_id, platform) in [("b", Platform::Android), ("a", Platform::Ios)] {
        let device = Device {
            device_id: device_id.into(),
            platform,
            token: unique("tok"),
            app_id: None,
            active: true,
        };
        directory.upsert_device(&id, device).await.unwrap();
    }
    let opt_out =
        Preference { category: "marketing".into(), channel: "sms".into(), opted_in: false };
    directory.set_preference(&id, opt_out.clone()).await.unwrap();

    let profile = directory.profile(&id).await.unwrap().unwrap();
    assert_eq!(profile.user, user);
    assert_eq!(profile.devices, directory.devices(&id).await.unwrap(), "the same devices");
    assert_eq!(profile.devices.len(), 2);
    assert_eq!(profile.preferences, vec![opt_out]);
    assert_eq!(directory.profile(&unique("nobody")).await.unwrap(), None);
    // Devices without a user row are not a recipient Herald knows.
    let orphan = unique("orphan");
    let device = Device {
        device_id: "x".into(),
        platform: Platform::Ios,
        token: unique("tok"),
        app_id: None,
        active: true,
    };
    directory.upsert_device(&orphan, device).await.unwrap();
    assert_eq!(directory.profile(&orphan).await.unwrap(), None);
}

async fn a_dead_token_deactivates_only_the_devices_that_still_carry_it<D: Directory>(
    directory: &D,
) {
    let user = unique("dead");
    let dead = unique("dead-token");
    let device = |id: &str, platform, token: &str| Device {
        device_id: id.into(),
        platform,
        token: token.into(),
        app_id: None,
        active: true,
    };
    directory.upsert_device(&user, device("ios", Platform::Ios, &dead)).await.unwrap();
    directory.upsert_device(&user, device("android", Platform::Android, &dead)).await.unwrap();
    // A device whose token was refreshed no longer carries the dead one.
    let refreshed = unique("fresh-token");
    directory.upsert_device(&user, device("old", Platform::Ios, &dead)).await.unwrap();
    directory.upsert_device(&user, device("old", Platform::Ios, &refreshed)).await.unwrap();

    assert_eq!(directory.deactivate_token(Platform::Ios, &dead).await.unwrap(), 1);
    assert_eq!(directory.deactivate_token(Platform::Ios, &dead).await.unwrap(), 0, "once");
    let active: Vec<(String, bool)> = directory
        .devices(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.device_id, d.active))
        .collect();
    assert_eq!(
        active,
        vec![("android".into(), true), ("ios".into(), false), ("old".into(), true)],
        "other platform and refreshed device untouched"
    );
}

async fn a_template_is_read_whole_every_locale_and_channel<D: Directory>(directory: &D) {
    let id = unique("tpl");
    let variant = |locale: &str, channel: &str, body: &str| TemplateVariant {
        template_id: id.clone(),
        locale: locale.into(),
        channel: channel.into(),
        subject: (channel == "email").then(|| "Hi".into()),
        title: None,
        body: body.into(),
        html: (channel == "email").then(|| "<p>Hi</p>".into()),
    };
    for v in
        [variant("", "sms", "old"), variant("", "sms", "{{ code }}"), variant("ko", "email", "x")]
    {
        directory.upsert_template(v).await.unwrap();
    }
    let mut read = directory.template(&id).await.unwrap();
    read.sort_by(|a, b| (&a.locale, &a.channel).cmp(&(&b.locale, &b.channel)));
    assert_eq!(read, vec![variant("", "sms", "{{ code }}"), variant("ko", "email", "x")]);
    assert!(directory.template(&unique("none")).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_directory_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let directory = SqliteDirectory::open(dir.path().join("directory.db")).unwrap();
    contract(&directory).await;
}

#[tokio::test]
async fn scylla_directory_keeps_the_contract() {
    let Some(config) = herald_testkit::cql::node("directory_contract") else { return };
    let session = config.connect_creating_keyspace().await.unwrap();
    let keyspace = config.keyspace.as_str();
    ScyllaDirectory::create_tables(&session, keyspace).await.unwrap();
    let directory = ScyllaDirectory::new(session, keyspace).await.unwrap();
    contract(&directory).await;
}
