//! Tests of `request.rs`.
use super::*;

const LIMITS: Limits = Limits { max_recipients: 3, max_schedule_ms: 30 * 86_400_000 };

#[test]
fn send_at_is_rfc3339_within_the_limit_and_past_means_now() {
    assert_eq!(parse_rfc3339_ms("2026-01-01T00:00:00Z"), Some(1_767_225_600_000));
    assert_eq!(parse_rfc3339_ms("2026-01-01T09:00:00+09:00"), Some(1_767_225_600_000));
    assert_eq!(parse_rfc3339_ms("2025-12-31T19:00:00-05:00"), Some(1_767_225_600_000));
    assert_eq!(parse_rfc3339_ms("tomorrow"), None);
}

/// Found by the `send_body` fuzz target: an offset of 10^17 hours overflowed the shift.
#[test]
fn an_offset_beyond_a_day_is_refused_not_overflowed() {
    assert_eq!(parse_rfc3339_ms("2031-01-0:0T0+222221415555010100:00Z"), None);
    assert_eq!(parse_rfc3339_ms("2026-01-01T00:00:00+222221415555010100:00"), None);
    assert_eq!(parse_rfc3339_ms("2026-01-01T00:00:00+24:00"), None);
    assert_eq!(parse_rfc3339_ms("2026-01-01T00:00:00-00:60"), None);
    assert_eq!(parse_rfc3339_ms("2026-01-01T23:59:00+23:59"), Some(1_767_225_600_000));
}

fn parse(json: &str) -> SendBody {
    serde_json::from_str(json).unwrap()
}

fn errors(json: &str) -> Vec<FieldError> {
    validate(parse(json), LIMITS, "n", "c").unwrap_err()
}

fn fields(json: &str) -> Vec<String> {
    errors(json).into_iter().map(|e| e.field).collect()
}

#[test]
fn the_seed_body_is_valid() {
    let seed = r#"{"to":[{"user_id":123456}],"from":{"email":"noreply@example.com"},"subject":"Hello","content":[{"type":"text/plain","value":"Hi there"}]}"#;
    let requests = validate(parse(seed), LIMITS, "n-1", "client").unwrap();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.recipient.user_id.as_deref(), Some("123456"));
    assert_eq!(r.email.as_ref().unwrap().text.as_deref(), Some("Hi there"));
    assert_eq!(r.category, "transactional");
    assert_eq!(r.client_id.as_deref(), Some("client"));
}

#[test]
fn one_request_per_recipient_with_one_notification_id() {
    let body = r#"{"to":[{"user_id":"a"},{"email":"b@example.com"},{"phone":"+14155550100"}],"sms":{"text":"hi"}}"#;
    let requests = validate(parse(body), LIMITS, "n-9", "c").unwrap();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.notification_id == "n-9"));
}

#[test]
fn addresses_are_checked_with_the_failing_field() {
    let e = errors(
        r#"{"to":[{"email":"not-an-address"},{"phone":"0123"}],"subject":"s","content":[{"type":"text/plain","value":"v"}]}"#,
    );
    let f: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(f, vec!["to[0].email", "to[1].phone"]);
    assert!(e[1].reason.contains("E.164"));
}

#[test]
fn content_rules() {
    assert_eq!(
        fields(r#"{"to":[{"user_id":1}],"content":[{"type":"text/plain","value":"v"}]}"#),
        vec!["subject"]
    );
    assert_eq!(
        fields(
            r#"{"to":[{"user_id":1}],"subject":"s","content":[{"type":"image/png","value":"v"}]}"#
        ),
        vec!["content[0].type", "content"]
    );
    assert_eq!(fields(r#"{"to":[{"user_id":1}]}"#), vec!["content"]);
    assert_eq!(
        fields(r#"{"to":[{"user_id":1}],"sms":{"text":"x"},"channels":["email","fax"]}"#),
        vec!["channels[0]", "channels[1]"]
    );
}

#[test]
fn recipient_rules() {
    let sms = r#""sms":{"text":"x"}"#;
    assert_eq!(fields(&format!(r#"{{"to":[],{sms}}}"#)), vec!["to"]);
    assert_eq!(fields(&format!(r#"{{"to":[{{}}],{sms}}}"#)), vec!["to[0]"]);
    assert_eq!(
        fields(&format!(r#"{{"to":[{{"user_id":1,"email":"a@b.co"}}],{sms}}}"#)),
        vec!["to[0]"]
    );
    assert_eq!(
        fields(&format!(
            r#"{{"to":[{{"user_id":1}},{{"user_id":2}},{{"user_id":3}},{{"user_id":4}}],{sms}}}"#
        )),
        vec!["to"]
    );
}

const IOS_TOKEN: &str = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1";

#[test]
fn device_recipients_are_checked_per_platform() {
    let push = r#""push":{"body":"b"}"#;
    let ok = format!(
        r#"{{"to":[{{"device":{{"platform":"ios","token":"{IOS_TOKEN}","app_id":"com.example.app"}}}},{{"device":{{"platform":"android","token":"fcm-token:APA91bH_x"}}}}],{push}}}"#
    );
    let requests = validate(parse(&ok), LIMITS, "n", "c").unwrap();
    let device = requests[0].recipient.device.as_ref().unwrap();
    assert_eq!(
        (device.platform.as_str(), device.app_id.as_deref()),
        ("ios", Some("com.example.app"))
    );
    assert_eq!(requests[1].partition_key(), "fcm-token:APA91bH_x");

    let bad = format!(
        r#"{{"to":[{{"device":{{"platform":"ios","token":"not-hex"}}}},{{"device":{{"platform":"android","token":"has space in it"}}}},{{"device":{{"platform":"windows","token":"abcdefgh"}}}}],{push}}}"#
    );
    let e = errors(&bad);
    let f: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(f, vec!["to[0].device.token", "to[1].device.token", "to[2].device.platform"]);
    assert!(e[0].reason.contains("hex"), "{}", e[0].reason);
    let both = format!(
        r#"{{"to":[{{"user_id":"u","device":{{"platform":"ios","token":"{IOS_TOKEN}"}}}}],{push}}}"#
    );
    assert_eq!(fields(&both), vec!["to[0]"]);
}

#[test]
fn delivery_options_ttl_priority_and_collapse_key() {
    let body = r#"{"to":[{"user_id":1}],"push":{"body":"b"},"priority":"normal","ttl":60,"collapse_key":"score"}"#;
    let r = &validate(parse(body), LIMITS, "n", "c").unwrap()[0];
    assert_eq!(r.priority.as_deref(), Some("normal"));
    assert_eq!(r.collapse_key.as_deref(), Some("score"));
    assert_eq!(r.expires_at, Some(r.accepted_at + 60_000));

    let scheduled =
        r#"{"to":[{"user_id":1}],"push":{"body":"b"},"ttl":60,"send_at":"2999-01-01T00:00:00Z"}"#;
    let limits = Limits { max_schedule_ms: i64::MAX, ..LIMITS };
    let r = &validate(parse(scheduled), limits, "n", "c").unwrap()[0];
    assert_eq!(r.expires_at, r.send_at.map(|at| at + 60_000), "ttl counts from send_at");

    let long_key = "k".repeat(65);
    assert_eq!(
        fields(&format!(
            r#"{{"to":[{{"user_id":1}}],"push":{{"body":"b"}},"priority":"urgent","ttl":0,"collapse_key":"{long_key}"}}"#
        )),
        vec!["priority", "ttl", "collapse_key"]
    );
    assert_eq!(fields(r#"{"to":[{"user_id":1}],"push":{"body":"b"},"ttl":99999999}"#), vec!["ttl"]);
}

#[test]
fn templates_take_data_and_a_locale_but_not_inline_content() {
    let body = r#"{"to":[{"user_id":1}],"template_id":"otp","locale":"ko-KR","data":{"code":123456,"name":"Ji","ok":true},"channels":["sms","push"]}"#;
    let r = &validate(parse(body), LIMITS, "n", "c").unwrap()[0];
    let t = r.template.as_ref().unwrap();
    assert_eq!((t.id.as_str(), t.locale.as_deref()), ("otp", Some("ko-KR")));
    assert_eq!(t.data.get("code").map(String::as_str), Some("123456"));
    assert_eq!(t.data.get("ok").map(String::as_str), Some("true"));
    assert!(r.sms.is_none() && r.push.is_none());

    assert_eq!(
        fields(r#"{"to":[{"user_id":1}],"template_id":"otp","sms":{"text":"x"}}"#),
        vec!["template_id"]
    );
    assert_eq!(
        fields(
            r#"{"to":[{"user_id":1}],"template_id":"o t p","locale":"ko_KR!","data":{"x":{"nested":1}}}"#
        ),
        vec!["template_id", "data.x", "locale"]
    );
    assert_eq!(
        fields(r#"{"to":[{"user_id":1}],"sms":{"text":"x"},"data":{"a":"b"},"locale":"ko"}"#),
        vec!["data", "locale"]
    );
}

#[test]
fn a_user_id_number_written_with_a_zero_fraction_is_that_user_and_any_other_fraction_is_refused() {
    let user = |id: &str| {
        let body = format!(r#"{{"to":[{{"user_id":{id}}}],"template_id":"otp"}}"#);
        serde_json::from_str::<SendBody>(&body).map(|b| match b.to.into_iter().next() {
            Some(RecipientBody { user_id: Some(id), .. }) => id.into_string(),
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(user("24073.0").unwrap(), "24073");
    assert_eq!(user("24073").unwrap(), "24073");
    assert_eq!(user("1959876660061377.0").unwrap(), "1959876660061377");
    assert_eq!(user(r#""24073.0""#).unwrap(), "24073.0");
    for refused in ["24073.5", "-1", "1e300"] {
        assert!(user(refused).is_err(), "{refused}");
    }
}
