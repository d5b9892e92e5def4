//! Tests of `fanout.rs`.
use std::collections::BTreeMap;

use herald_schemas::{EmailContent, PushContent, Recipient, SmsContent};

use super::*;
use crate::config::{Fallbacks, RegionRoutes};
use crate::directory::{Device, Preference, User};

fn request(user_id: Option<&str>) -> NotificationRequest {
    NotificationRequest {
        notification_id: "n1".into(),
        accepted_at: 1,
        client_id: None,
        recipient: Recipient { user_id: user_id.map(Into::into), ..Recipient::default() },
        channels: vec![],
        category: "marketing".into(),
        from: None,
        email: Some(EmailContent { subject: "s".into(), text: Some("t".into()), html: None }),
        sms: None,
        push: Some(PushContent { title: None, body: "b".into(), data: BTreeMap::new() }),
        metadata: BTreeMap::new(),
        ..NotificationRequest::default()
    }
}

fn profile() -> Profile {
    let device = |id: &str, platform, active| Device {
        device_id: id.into(),
        platform,
        token: match platform {
            Platform::Ios => id.repeat(64),
            Platform::Android => format!("fcm-token-{id}"),
        },
        app_id: None,
        active,
    };
    Profile {
        user: User {
            user_id: "u1".into(),
            email: Some("u1@example.com".into()),
            phone: None,
            locale: None,
            timezone: None,
            region: None,
            quiet_hours: None,
        },
        devices: vec![
            device("a", Platform::Ios, true),
            device("b", Platform::Android, true),
            device("c", Platform::Android, false),
        ],
        preferences: vec![],
    }
}

fn reasons(plan: &Plan) -> Vec<(Option<&str>, &str)> {
    plan.events
        .iter()
        .filter(|e| e.kind == EventKind::Skipped)
        .map(|e| (e.channel.as_deref(), e.reason.as_deref().unwrap_or_default()))
        .collect()
}

#[test]
fn content_decides_channels_and_push_fans_out_per_active_device() {
    let plan = plan(&request(Some("u1")), Some(&profile()), &Rules::default());
    let targets: Vec<_> = plan.messages.iter().map(|(c, m)| (*c, m.target.as_str())).collect();
    assert_eq!(
        targets,
        vec![
            (Channel::Email, "u1@example.com"),
            (Channel::Ios, "a".repeat(64).as_str()),
            (Channel::Android, "fcm-token-b")
        ]
    );
    assert!(plan.messages.iter().all(|(c, m)| (m.email.is_some()) == (*c == Channel::Email)));
    assert_eq!(plan.events.iter().filter(|e| e.kind == EventKind::Routed).count(), 3);
}

#[test]
fn a_raw_device_recipient_goes_to_its_platform_with_the_delivery_options() {
    let mut r = request(None);
    r.recipient.device = Some(herald_schemas::DeviceTarget {
        platform: "android".into(),
        token: "fcm-token".into(),
        app_id: Some("com.example".into()),
    });
    r.email = None;
    (r.priority, r.expires_at, r.collapse_key) =
        (Some("high".into()), Some(99), Some("score".into()));
    let plan = plan(&r, None, &Rules::default());
    let [(channel, message)] = plan.messages.as_slice() else { panic!("{plan:?}") };
    assert_eq!((*channel, message.target.as_str()), (Channel::Android, "fcm-token"));
    assert_eq!(message.app_id.as_deref(), Some("com.example"));
    assert_eq!(
        (message.priority.as_deref(), message.expires_at, message.collapse_key.as_deref()),
        (Some("high"), Some(99), Some("score"))
    );
}

/// 23:30 in Seoul.
const SEOUL_NIGHT: i64 = 1_795_703_400_000;
/// 07:00 the next morning in Seoul.
const SEOUL_MORNING: i64 = 1_795_730_400_000;

fn night_owl() -> Profile {
    let mut p = profile();
    p.user.phone = Some("+821012345678".into());
    p.user.timezone = Some("Asia/Seoul".into());
    p.user.quiet_hours = Some("22:00-07:00".into());
    p
}

fn everything(category: &str) -> NotificationRequest {
    let mut r = request(Some("u1"));
    r.category = category.into();
    r.sms = Some(SmsContent { text: "t".into() });
    r
}

#[test]
fn quiet_hours_defer_push_and_sms_to_the_windows_end_and_email_goes_now() {
    let rules = Rules::default();
    let plan = plan_at(&everything("marketing"), Some(&night_owl()), &rules, SEOUL_NIGHT);
    let channels: Vec<_> = plan.messages.iter().map(|(c, _)| *c).collect();
    assert_eq!(channels, vec![Channel::Email]);
    let later = plan.deferred.unwrap();
    assert_eq!(later.send_at, Some(SEOUL_MORNING));
    assert_eq!(later.channels, vec!["sms".to_owned(), "push".to_owned()]);
    assert_eq!(later.notification_id, "n1", "the same notification, later");
    let scheduled: Vec<_> = plan
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Scheduled)
        .map(|e| (e.channel.as_deref(), e.reason.as_deref()))
        .collect();
    assert_eq!(
        scheduled,
        vec![(Some("sms"), Some("quiet_hours")), (Some("push"), Some("quiet_hours"))]
    );

    let morning = plan_at(&later, Some(&night_owl()), &rules, SEOUL_MORNING);
    assert!(morning.deferred.is_none(), "the window has ended");
    assert_eq!(morning.messages.len(), 3, "sms and both devices");
}

#[test]
fn critical_categories_ignore_quiet_hours_and_opt_outs() {
    let rules = Rules { critical: vec!["security".into()], ..Rules::default() };
    let mut p = night_owl();
    p.preferences.push(Preference {
        category: "security".into(),
        channel: "sms".into(),
        opted_in: false,
    });
    let plan = plan_at(&everything("security"), Some(&p), &rules, SEOUL_NIGHT);
    assert!(plan.deferred.is_none());
    assert!(reasons(&plan).is_empty(), "{:?}", reasons(&plan));
    assert_eq!(plan.messages.len(), 4, "email, sms and both devices, now");
}

#[test]
fn a_capped_channel_leaves_the_plan_with_a_skip_and_the_others_stay() {
    let mut plan = plan(&request(Some("u1")), Some(&profile()), &Rules::default());
    assert_eq!(plan.requested_channels(), vec!["email", "push"]);
    plan.drop_channel(&request(Some("u1")), "push", SkipReason::FrequencyCapped);
    let channels: Vec<_> = plan.messages.iter().map(|(c, _)| *c).collect();
    assert_eq!(channels, vec![Channel::Email]);
    let routed = plan.events.iter().filter(|e| e.kind == EventKind::Routed).count();
    assert_eq!(routed, 1, "the push devices' routed events went with them");
    assert_eq!(reasons(&plan), vec![(Some("push"), "frequency_capped")]);
}

#[test]
fn unknown_user_is_one_skip() {
    let plan = plan(&request(Some("ghost")), None, &Rules::default());
    assert!(plan.messages.is_empty());
    assert_eq!(reasons(&plan), vec![(None, "unknown_user")]);
}

#[test]
fn opt_out_applies_to_its_category_and_channel_only() {
    let mut p = profile();
    p.preferences.push(Preference {
        category: "marketing".into(),
        channel: "email".into(),
        opted_in: false,
    });
    p.preferences.push(Preference {
        category: "security".into(),
        channel: "push".into(),
        opted_in: false,
    });
    let plan = plan(&request(Some("u1")), Some(&p), &Rules::default());
    assert_eq!(reasons(&plan), vec![(Some("email"), "opted_out")]);
    assert_eq!(plan.messages.len(), 2, "push still goes out: its opt-out is for security");
}

#[test]
fn requested_channel_without_content_address_or_name_is_skipped() {
    let mut r = request(Some("u1"));
    r.channels = vec!["sms".into(), "fax".into()];
    let plan1 = plan(&r, Some(&profile()), &Rules::default());
    assert_eq!(
        reasons(&plan1),
        vec![(Some("sms"), "no_content"), (Some("fax"), "unknown_channel")]
    );

    r.sms = Some(SmsContent { text: "hi".into() });
    r.channels = vec!["sms".into()];
    let plan2 = plan(&r, Some(&profile()), &Rules::default());
    assert_eq!(reasons(&plan2), vec![(Some("sms"), "no_address")]);
}

#[test]
fn raw_address_recipient_needs_no_directory_entry() {
    let mut r = request(None);
    r.recipient.email = Some("guest@example.com".into());
    r.push = None;
    let plan = plan(&r, None, &Rules::default());
    assert_eq!(plan.messages.len(), 1);
    assert_eq!(plan.messages[0].1.target, "guest@example.com");
}

#[test]
fn the_recipients_region_chooses_the_route_of_each_channel() {
    let routes = RegionRoutes::new(BTreeMap::from([(
        Channel::Android,
        BTreeMap::from([("CN".to_owned(), "china".to_owned())]),
    )]));
    let mut p = profile();
    p.user.region = Some("cn".into());
    let rules = Rules { routes: routes.clone(), ..Rules::default() };
    let plan = plan(&request(Some("u1")), Some(&p), &rules);
    let route_of =
        |channel| plan.messages.iter().find(|(c, _)| *c == channel).map(|(_, m)| m.route.as_str());
    assert_eq!(route_of(Channel::Android), Some("china"));
    assert_eq!(route_of(Channel::Ios), Some("default"), "no route for ios in CN");
    p.user.region = Some("DE".into());
    let elsewhere = super::plan(&request(Some("u1")), Some(&p), &rules);
    assert!(elsewhere.messages.iter().all(|(_, m)| m.route == "default"));
    assert!(routes.validate().is_ok());
    let lower = RegionRoutes::new(BTreeMap::from([(
        Channel::Sms,
        BTreeMap::from([("cn".to_owned(), "x".to_owned())]),
    )]));
    assert!(lower.validate().is_err());
}

fn security_falls_back_to_sms() -> Rules {
    let rules = BTreeMap::from([(
        "security".to_owned(),
        BTreeMap::from([("push".to_owned(), Channel::Sms)]),
    )]);
    Rules { fallbacks: Fallbacks::new(rules), ..Rules::default() }
}

#[test]
fn a_push_without_devices_goes_to_the_categorys_fallback_channel() {
    let mut r = request(Some("u1"));
    r.category = "security".into();
    r.email = None;
    let mut p = profile();
    p.devices.clear();
    p.user.phone = Some("+14155550100".into());
    let plan = plan(&r, Some(&p), &security_falls_back_to_sms());
    assert_eq!(reasons(&plan), vec![(Some("push"), "no_device")]);
    assert_eq!(plan.messages.len(), 1);
    let (channel, sms) = &plan.messages[0];
    assert_eq!((*channel, sms.target.as_str()), (Channel::Sms, "+14155550100"));
    assert_eq!(sms.sms.as_ref().unwrap().text, "b");
    let routed = plan.events.iter().find(|e| e.kind == EventKind::Routed).unwrap();
    assert_eq!(routed.detail.get("fallback_from").map(String::as_str), Some("push"));

    r.category = "marketing".into();
    let other = super::plan(&r, Some(&p), &security_falls_back_to_sms());
    assert!(other.messages.is_empty(), "marketing has no fallback");
}

#[test]
fn pushes_to_devices_carry_the_fallback_target_for_a_failure() {
    let mut r = request(Some("u1"));
    r.category = "security".into();
    let mut p = profile();
    p.user.phone = Some("+14155550100".into());
    let plan = plan(&r, Some(&p), &security_falls_back_to_sms());
    let pushes: Vec<_> = plan
        .messages
        .iter()
        .filter(|(c, _)| matches!(c, Channel::Ios | Channel::Android))
        .collect();
    assert_eq!(pushes.len(), 2);
    for (_, push) in pushes {
        let fallback = push.fallback.as_ref().unwrap();
        assert_eq!((fallback.channel.as_str(), fallback.target.as_str()), ("sms", "+14155550100"));
    }
    assert!(
        Fallbacks::new(BTreeMap::from([(
            "security".to_owned(),
            BTreeMap::from([("push".to_owned(), Channel::Ios)])
        )]))
        .validate()
        .is_err()
    );
}

/// What a service producing Avro directly sends skips the send API's checks: a target no
/// provider could take fails with the reason instead of reaching one.
#[test]
fn a_target_the_send_api_would_refuse_fails_with_the_reason_and_is_not_routed() {
    let mut r = request(None);
    r.recipient.email = Some("not an address".into());
    r.recipient.phone = Some("+15551234567".into());
    r.sms = Some(SmsContent { text: "t".into() });
    r.push = None;
    r.channels = vec!["email".into(), "sms".into()];
    let plan = plan(&r, None, &Rules::default());
    assert!(plan.messages.is_empty(), "{plan:?}");
    let failed: Vec<_> = plan
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Failed)
        .map(|e| (e.channel.as_deref(), e.target.as_deref(), e.reason.as_deref()))
        .collect();
    assert_eq!(
        failed,
        vec![
            (Some("email"), Some("not an address"), Some(INVALID_TARGET)),
            (Some("sms"), Some("+15551234567"), Some(INVALID_TARGET)),
        ]
    );
    let sms = plan.events.iter().find(|e| e.channel.as_deref() == Some("sms")).unwrap();
    assert!(sms.detail["error"].contains("numbering plan"), "{sms:?}");

    r.recipient.device = Some(herald_schemas::DeviceTarget {
        platform: "ios".into(),
        token: "not-hex".into(),
        app_id: None,
    });
    r.channels = vec!["push".into()];
    r.push = Some(PushContent { title: None, body: "b".into(), data: BTreeMap::new() });
    let plan = super::plan(&r, None, &Rules::default());
    assert!(plan.messages.is_empty(), "{plan:?}");
    assert_eq!(plan.events.iter().filter(|e| e.kind == EventKind::Failed).count(), 1);
}

#[test]
fn a_fallback_to_an_unassigned_number_is_left_out_and_the_push_still_goes() {
    let mut r = request(Some("u1"));
    r.category = "security".into();
    r.email = None;
    let mut p = profile();
    p.user.phone = Some("+15551234567".into());
    let plan = plan(&r, Some(&p), &security_falls_back_to_sms());
    assert_eq!(plan.messages.len(), 2, "both devices: {plan:?}");
    assert!(plan.messages.iter().all(|(_, m)| m.fallback.is_none()), "{plan:?}");
}
