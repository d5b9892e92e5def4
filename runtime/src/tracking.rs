//! Email open and click tracking: the email dispatcher rewrites an HTML part's links to
//! `{base_url}/t/c/{token}` and adds a pixel `{base_url}/t/o/{token}`; ingest serves both and
//! turns them into `opened` / `clicked` events. A token carries the notification, the target
//! and (for a click) the destination, and is signed with HMAC-SHA256 under a secret both roles
//! read from their configuration: a token cannot be forged, so a tracked link cannot be used
//! to redirect anywhere its email did not point.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::config::{SecretError, SecretSource};

/// `[tracking]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    pub enabled: bool,
    /// Where recipients reach ingest's `/t/` routes (the public URL of the send API).
    pub base_url: String,
    /// The signing secret, the same for the dispatchers and ingest.
    pub secret: Option<SecretSource>,
    /// Categories whose emails are never tracked.
    pub exclude_categories: Vec<String>,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            base_url: String::new(),
            secret: None,
            exclude_categories: vec!["security".into()],
        }
    }
}

impl TrackingConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if !self.base_url.starts_with("https://") && !self.base_url.starts_with("http://") {
            return Err(format!("tracking.base_url {:?} is not an http(s) URL", self.base_url));
        }
        if self.secret.is_none() {
            return Err("tracking.enabled needs tracking.secret (env or file)".into());
        }
        Ok(())
    }

    /// The tracker, if tracking is on.
    pub fn tracker(&self) -> Result<Option<EngagementTracker>, SecretError> {
        let (true, Some(secret)) = (self.enabled, &self.secret) else { return Ok(None) };
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.read()?.as_bytes());
        Ok(Some(EngagementTracker {
            key,
            base_url: self.base_url.trim_end_matches('/').to_owned(),
            exclude_categories: self.exclude_categories.clone(),
        }))
    }
}

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    #[serde(rename = "n")]
    pub notification_id: String,
    #[serde(rename = "t")]
    pub target: String,
    /// The destination of a click; none for the open pixel.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EngagementTracker {
    key: hmac::Key,
    base_url: String,
    exclude_categories: Vec<String>,
}

/// The MAC is cut to 128 bits: enough against forgery, and links stay shorter.
const MAC_BYTES: usize = 16;

impl EngagementTracker {
    pub fn tracks(&self, category: &str) -> bool {
        !self.exclude_categories.iter().any(|c| c == category)
    }

    pub fn token(&self, tracked: &Tracked) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(tracked).unwrap_or_default());
        let tag = hmac::sign(&self.key, payload.as_bytes());
        let mac = tag.as_ref().get(..MAC_BYTES).unwrap_or_default();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// What `token` stands for, if this tracker signed it.
    pub fn verify(&self, token: &str) -> Option<Tracked> {
        let (payload, mac) = token.split_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let expected = hmac::sign(&self.key, payload.as_bytes());
        let expected = expected.as_ref().get(..MAC_BYTES)?;
        // Constant time: ring's verify works on whole tags, so compare the cut ones here.
        if mac.len() != MAC_BYTES
            || mac.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0
        {
            return None;
        }
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }

    /// `html` with every http(s) link going through the click route and an open pixel at the
    /// end of the body.
    pub fn rewrite_html(&self, html: &str, notification_id: &str, target: &str) -> String {
        let mut out = String::with_capacity(html.len() + 256);
        // Lowered once: `href=` is matched case-insensitively over the whole part.
        let lower = html.to_ascii_lowercase();
        let mut copied = 0;
        while let Some(link) = next_link(html, &lower, copied) {
            out.push_str(&html[copied..link.value_start]);
            let (quote, url) = (link.quote, &html[link.url.clone()]);
            let destination = url.replace("&amp;", "&");
            let tracked = Tracked {
                notification_id: notification_id.to_owned(),
                target: target.to_owned(),
                url: Some(destination),
            };
            out.push_str(&format!("{quote}{}/t/c/{}{quote}", self.base_url, self.token(&tracked)));
            copied = link.end;
        }
        out.push_str(&html[copied..]);
        let open = Tracked {
            notification_id: notification_id.to_owned(),
            target: target.to_owned(),
            url: None,
        };
        let pixel = format!(
            r#"<img src="{}/t/o/{}" width="1" height="1" alt="" style="display:none">"#,
            self.base_url,
            self.token(&open)
        );
        match out.to_ascii_lowercase().rfind("</body>") {
            Some(at) => out.insert_str(at, &pixel),
            None => out.push_str(&pixel),
        }
        out
    }
}

/// A quoted `href` value that is an http(s) URL, by byte positions in the HTML.
struct Link {
    /// Where the quoted value starts (its opening quote).
    value_start: usize,
    quote: char,
    /// The URL, without the quotes and surrounding whitespace.
    url: std::ops::Range<usize>,
    /// Just past the closing quote.
    end: usize,
}

/// The next link at or after `from`; `lower` is `html` lowered (same byte positions).
fn next_link(html: &str, lower: &str, mut from: usize) -> Option<Link> {
    loop {
        let at = from + lower.get(from..)?.find("href=")?;
        let value_start = at + "href=".len();
        let quote = html.get(value_start..)?.chars().next()?;
        from = value_start;
        if quote != '"' && quote != '\'' {
            continue;
        }
        let inner = value_start + 1;
        let len = html.get(inner..)?.find(quote)?;
        let raw = html.get(inner..inner + len)?;
        let url = raw.trim();
        let lead = raw.len() - raw.trim_start().len();
        let scheme = lower.get(inner + lead..inner + len)?;
        // A destination must survive as a Location header: no whitespace or control
        // characters inside (such a link is left as it is, untracked).
        let clean = !url.chars().any(|c| c.is_whitespace() || c.is_control());
        if clean && (scheme.starts_with("http://") || scheme.starts_with("https://")) {
            let start = inner + lead;
            return Some(Link {
                value_start,
                quote,
                url: start..start + url.len(),
                end: inner + len + 1,
            });
        }
        from = inner + len + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(secret: &str) -> EngagementTracker {
        EngagementTracker {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            base_url: "https://herald.example.com".into(),
            exclude_categories: vec!["security".into()],
        }
    }

    #[test]
    fn a_token_verifies_under_its_secret_only_and_not_when_changed() {
        let tracked = Tracked {
            notification_id: "n-1".into(),
            target: "a@example.com".into(),
            url: Some("https://shop.example.com/sale?a=1&b=2".into()),
        };
        let token = tracker("s1").token(&tracked);
        assert_eq!(tracker("s1").verify(&token), Some(tracked.clone()));
        assert_eq!(tracker("s2").verify(&token), None, "another secret");
        let (payload, mac) = token.split_once('.').unwrap();
        let mut other = tracked;
        other.url = Some("https://evil.example.net/".into());
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
        assert_eq!(tracker("s1").verify(&format!("{forged_payload}.{mac}")), None, "new url");
        assert_eq!(tracker("s1").verify(payload), None, "no mac");
        assert_eq!(tracker("s1").verify("garbage.x"), None);
    }

    #[test]
    fn links_are_rewritten_and_a_pixel_added_and_other_hrefs_left_alone() {
        let t = tracker("s1");
        let html = r##"<html><body><a href="https://shop.example.com/sale?a=1&amp;b=2">Sale</a>
            <a HREF='http://x.example.com'>x</a> <a href="mailto:help@example.com">mail</a>
            <a href="#top">top</a> <a href="https://bad.example.com/a
b">broken</a></body></html>"##;
        let out = t.rewrite_html(html, "n-1", "a@example.com");
        assert!(!out.contains("shop.example.com/sale"), "{out}");
        assert!(out.contains("mailto:help@example.com") && out.contains("href=\"#top\""), "{out}");
        assert!(out.contains("https://bad.example.com/a\nb"), "a link with a line break: {out}");
        let clicks: Vec<&str> = out.match_indices("/t/c/").map(|(i, _)| &out[i + 5..]).collect();
        assert_eq!(clicks.len(), 2, "{out}");
        let token = clicks[0].split(['"', '\'']).next().unwrap();
        let tracked = t.verify(token).unwrap();
        assert_eq!(tracked.url.as_deref(), Some("https://shop.example.com/sale?a=1&b=2"));
        let pixel_at = out.find("/t/o/").unwrap();
        assert!(pixel_at < out.find("</body>").unwrap(), "inside the body: {out}");
        assert!(t.tracks("marketing") && !t.tracks("security"));
    }
}
