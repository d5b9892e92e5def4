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
    a_token_is_owned_only_by_the_devices_that_still_carry_it(directory).await;
    a_template_is_read_whole_and_replaced_whole(directory).await;
    erasing_a_user_leaves_nothing_of_them(directory).await;
    a_token_is_found_on_every_device_carrying_it_and_leaves_with_the_device(directory).await;
    progress_reads_back_per_topic_and_partition(directory).await;
    registering_a_device_makes_its_user_and_names_the_tokens_other_carriers(directory).await;
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
    assert_eq!(directory.user(&user.user_id).await.unwrap(), Some(user.clone()), "last write wins");
    assert_eq!(directory.user(&unique("nobody")).await.unwrap(), None);
    directory.ensure_user(&user.user_id).await.unwrap();
    assert_eq!(
        directory.user(&user.user_id).await.unwrap(),
        Some(user),
        "an existing user is kept"
    );
    let new = unique("ensured");
    directory.ensure_user(&new).await.unwrap();
    let created = User { user_id: new.clone(), ..User::default() };
    assert_eq!(directory.user(&new).await.unwrap(), Some(created), "a new one has no fields");
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

async fn a_token_is_owned_only_by_the_devices_that_still_carry_it<D: Directory>(directory: &D) {
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
    assert_eq!(
        directory.token_owners(Platform::Ios, &dead).await.unwrap(),
        vec![(user.clone(), "ios".to_owned())],
        "not the other platform's, not the refreshed device"
    );
    assert_eq!(
        directory.token_owners(Platform::Ios, &refreshed).await.unwrap(),
        vec![(user, "old".to_owned())]
    );
}

async fn a_template_is_read_whole_and_replaced_whole<D: Directory>(directory: &D) {
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
    let sorted = |mut variants: Vec<TemplateVariant>| {
        variants.sort_by(|a, b| (&a.locale, &a.channel).cmp(&(&b.locale, &b.channel)));
        variants
    };
    let first =
        vec![variant("", "sms", "old"), variant("ko", "email", "x"), variant("zh", "sms", "y")];
    directory.put_template(&id, first.clone()).await.unwrap();
    assert_eq!(sorted(directory.template(&id).await.unwrap()), sorted(first));
    let second = vec![variant("", "sms", "{{ code }}"), variant("ko", "email", "x")];
    directory.put_template(&id, second.clone()).await.unwrap();
    directory.put_template(&id, second.clone()).await.unwrap();
    assert_eq!(
        sorted(directory.template(&id).await.unwrap()),
        sorted(second),
        "replaced whole: the zh variant is gone, the default changed"
    );
    assert!(directory.template_ids().await.unwrap().contains(&id));
    assert!(directory.template(&unique("none")).await.unwrap().is_empty());
    assert!(directory.delete_template(&id).await.unwrap());
    assert!(directory.template(&id).await.unwrap().is_empty());
    assert!(!directory.template_ids().await.unwrap().contains(&id));
    assert!(!directory.delete_template(&id).await.unwrap(), "nothing left to delete");
}

async fn erasing_a_user_leaves_nothing_of_them<D: Directory>(directory: &D) {
    let (user_id, neighbour) = (unique("erased"), unique("kept"));
    let token = unique("tok");
    let user =
        User { user_id: user_id.clone(), email: Some("e@example.com".into()), ..User::default() };
    directory.upsert_user(user).await.unwrap();
    let device = |id: &str, token: &str| Device {
        device_id: id.into(),
        platform: Platform::Android,
        token: token.into(),
        app_id: None,
        active: true,
    };
    directory.upsert_device(&user_id, device("phone", &token)).await.unwrap();
    let older = format!("{token}-older");
    directory.upsert_device(&user_id, device("tablet", &older)).await.unwrap();
    directory.upsert_device(&user_id, device("tablet", &format!("{token}-newer"))).await.unwrap();
    let opt_out =
        Preference { category: "marketing".into(), channel: "sms".into(), opted_in: false };
    directory.set_preference(&user_id, opt_out.clone()).await.unwrap();
    let counter = QuotaCounter {
        user_id: user_id.clone(),
        category: "marketing".into(),
        channel: "sms".into(),
        day: "2026-12-07".into(),
    };
    assert!(directory.take_quota(&counter, "n1", 1).await.unwrap());
    assert!(!directory.take_quota(&counter, "n2", 1).await.unwrap(), "cap reached");
    let kept = User { user_id: neighbour.clone(), ..User::default() };
    directory.upsert_user(kept.clone()).await.unwrap();
    directory.set_preference(&neighbour, opt_out).await.unwrap();

    assert!(directory.delete_user(&user_id).await.unwrap());
    assert_eq!(directory.user(&user_id).await.unwrap(), None);
    assert!(directory.devices(&user_id).await.unwrap().is_empty());
    assert!(directory.preferences(&user_id).await.unwrap().is_empty());
    assert!(directory.token_owners(Platform::Android, &token).await.unwrap().is_empty());
    assert!(directory.token_owners(Platform::Android, &older).await.unwrap().is_empty());
    assert!(directory.take_quota(&counter, "n2", 1).await.unwrap(), "the counts went too");
    assert_eq!(directory.user(&neighbour).await.unwrap(), Some(kept), "others untouched");
    assert_eq!(directory.preferences(&neighbour).await.unwrap().len(), 1);
    assert!(!directory.delete_user(&user_id).await.unwrap(), "erasing again finds nothing");
}

async fn a_token_is_found_on_every_device_carrying_it_and_leaves_with_the_device<D: Directory>(
    directory: &D,
) {
    let (a, b) = (unique("a"), unique("b"));
    let token = unique("shared");
    let device = |id: &str| Device {
        device_id: id.into(),
        platform: Platform::Ios,
        token: token.clone(),
        app_id: None,
        active: true,
    };
    directory.upsert_device(&a, device("phone")).await.unwrap();
    directory.upsert_device(&b, device("pad")).await.unwrap();
    let mut owners = directory.token_owners(Platform::Ios, &token).await.unwrap();
    owners.sort();
    let mut expected = vec![(a.clone(), "phone".to_owned()), (b.clone(), "pad".to_owned())];
    expected.sort();
    assert_eq!(owners, expected);
    assert!(
        directory.token_owners(Platform::Android, &token).await.unwrap().is_empty(),
        "per platform"
    );
    assert!(directory.remove_device(&a, "phone").await.unwrap());
    assert!(!directory.remove_device(&a, "phone").await.unwrap());
    assert!(directory.devices(&a).await.unwrap().is_empty());
    assert_eq!(
        directory.token_owners(Platform::Ios, &token).await.unwrap(),
        vec![(b, "pad".to_owned())]
    );
}

async fn registering_a_device_makes_its_user_and_names_the_tokens_other_carriers<D: Directory>(
    directory: &D,
) {
    let (first, second) = (unique("first"), unique("second"));
    let token = unique("moving");
    let device = |id: &str| Device {
        device_id: id.into(),
        platform: Platform::Android,
        token: token.clone(),
        app_id: None,
        active: true,
    };
    assert!(directory.register_device(&first, device("phone")).await.unwrap().is_empty());
    assert!(directory.user(&first).await.unwrap().is_some(), "the user is made");
    assert!(
        directory.register_device(&first, device("phone")).await.unwrap().is_empty(),
        "the device itself is not another carrier"
    );
    let others = directory.register_device(&second, device("pad")).await.unwrap();
    assert_eq!(others, vec![(first.clone(), "phone".to_owned())]);
    assert_eq!(directory.devices(&second).await.unwrap(), vec![device("pad")]);
    assert_eq!(directory.devices(&first).await.unwrap().len(), 1, "the caller takes it away");
}

async fn progress_reads_back_per_topic_and_partition<D: Directory>(directory: &D) {
    let topic = unique("topic");
    directory.set_progress(&topic, 0, 10).await.unwrap();
    directory.set_progress(&topic, 1, 3).await.unwrap();
    directory.set_progress(&topic, 0, 12).await.unwrap();
    let mut mine: Vec<(String, i32, i64)> =
        directory.progress().await.unwrap().into_iter().filter(|(t, _, _)| *t == topic).collect();
    mine.sort();
    assert_eq!(mine, vec![(topic.clone(), 0, 12), (topic, 1, 3)]);
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
