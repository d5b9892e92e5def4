//! Email open and click tracking: links in an email's HTML go through signed tracked links,
//! a click redirects to the original destination and becomes a `clicked` event, the pixel
//! an `opened` event; forged links are refused (no open redirect); excluded categories are
//! not tracked.

use crate::support;

use std::time::Duration;

use herald_runtime::SecretSource;
use herald_runtime::tracking::TrackingConfig;
use herald_testkit::mail_sink::ReceivedMail;
use support::{TestEnv, add_user};

const WAIT: Duration = Duration::from_secs(30);
const BASE: &str = "http://herald.test";

/// The decoded text of the message's `text/html` part (7bit, quoted-printable or base64).
fn html_part(mail: &ReceivedMail) -> String {
    use base64::Engine as _;
    let part = mail.raw.split("Content-Type: text/html").nth(1).expect("an HTML part");
    let (head, body) = part.split_once("\r\n\r\n").unwrap();
    let body = body.split("\r\n--").next().unwrap();
    if head.contains("Content-Transfer-Encoding: base64") {
        let compact: String = body.split_whitespace().collect();
        return String::from_utf8(
            base64::engine::general_purpose::STANDARD.decode(compact).unwrap(),
        )
        .unwrap();
    }
    if head.contains("Content-Transfer-Encoding: quoted-printable") {
        let joined = body.replace("=\r\n", "");
        let mut out = Vec::new();
        let bytes = joined.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&joined[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        return String::from_utf8(out).unwrap();
    }
    body.to_owned()
}

/// The tracked URLs (`/t/...`) in `html`, in order.
fn tracked_urls(html: &str, route: &str) -> Vec<String> {
    html.match_indices(&format!("{BASE}{route}"))
        .map(|(at, _)| html[at..].split(['"', '\'']).next().unwrap().to_owned())
        .collect()
}

fn html_body(user: &str, category: &str) -> String {
    serde_json::json!({
        "to": [{"user_id": user}],
        "from": {"email": "shop@example.com"},
        "subject": format!("{category} news"),
        "category": category,
        "content": [
            {"type": "text/plain", "value": "See https://shop.example.com/sale"},
            {"type": "text/html", "value": "<html><body><p>Our <a href=\"https://shop.example.com/sale?a=1&amp;b=2\">sale</a> is on.</p></body></html>"},
        ],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracked_link_redirects_to_its_destination_and_records_the_click_and_forged_ones_are_refused()
 {
    let mut env = TestEnv::start().await;
    let secret = env.dir.path().join("tracking-secret");
    std::fs::write(&secret, "a-long-random-secret\n").unwrap();
    env.config.tracking = TrackingConfig {
        enabled: true,
        base_url: BASE.into(),
        secret: Some(SecretSource::File(secret.display().to_string())),
        exclude_categories: vec!["security".into()],
    };
    add_user(&env, "reader", "reader@example.com").await;
    let pipeline = env.pipeline().await;
    let key = env.api_key().await;
    let (status, body) = pipeline.post(Some(&key), &html_body("reader", "marketing")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let subject =
        |s: &'static str| move |m: &ReceivedMail| m.header("Subject").as_deref() == Some(s);
    let mail = env.mail.wait_for(WAIT, subject("marketing news")).await.expect("delivered");
    let html = html_part(&mail);
    assert!(!html.contains("https://shop.example.com/sale"), "the link is tracked: {html}");
    let clicks = tracked_urls(&html, "/t/c/");
    let opens = tracked_urls(&html, "/t/o/");
    assert_eq!((clicks.len(), opens.len()), (1, 1), "{html}");

    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let follow = |url: &str| http.get(url.replacen(BASE, &pipeline.api, 1)).send();
    let click = follow(&clicks[0]).await.unwrap();
    assert_eq!(click.status(), 302);
    assert_eq!(click.headers()["location"], "https://shop.example.com/sale?a=1&b=2");
    let open = follow(&opens[0]).await.unwrap();
    assert_eq!(open.status(), 200);
    assert_eq!(open.headers()["content-type"], "image/gif");

    // Another destination under the same signature, or an open token used as a link.
    let (payload, mac) = clicks[0].rsplit('/').next().unwrap().split_once('.').unwrap();
    let forged = format!("{BASE}/t/c/{}x.{mac}", payload);
    assert_eq!(follow(&forged).await.unwrap().status(), 404);
    let open_as_click = opens[0].replacen("/t/o/", "/t/c/", 1);
    assert_eq!(follow(&open_as_click).await.unwrap().status(), 404);

    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, status) = pipeline.get(&key, &format!("/v1/notifications/{id}")).await;
        let kinds: Vec<&str> = status["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        if kinds.contains(&"clicked") && kinds.contains(&"opened") {
            let clicked =
                status["events"].as_array().unwrap().iter().find(|e| e["kind"] == "clicked");
            assert_eq!(clicked.unwrap()["detail"]["url"], "https://shop.example.com/sale?a=1&b=2");
            assert_eq!(status["deliveries"][0]["state"], "clicked", "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no opened/clicked events: {kinds:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Security mail is never tracked.
    let (status, _) = pipeline.post(Some(&key), &html_body("reader", "security")).await;
    assert_eq!(status, 202);
    let mail = env.mail.wait_for(WAIT, subject("security news")).await.expect("delivered");
    let html = html_part(&mail);
    assert!(html.contains("https://shop.example.com/sale?a=1&amp;b=2"), "{html}");
    assert!(!html.contains("/t/o/"), "{html}");
    pipeline.stop().await;
}
