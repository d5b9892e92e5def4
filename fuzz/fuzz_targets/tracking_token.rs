//! Any token in an open pixel's or a tracked link's path: refused unless this tracker
//! signed it, never a panic; a token it signs verifies to what it stands for.
#![no_main]

use std::sync::OnceLock;

use herald_runtime::SecretSource;
use herald_runtime::tracking::{Tracked, EngagementTracker, TrackingConfig};
use libfuzzer_sys::fuzz_target;

fn tracker() -> &'static EngagementTracker {
    static TRACKER: OnceLock<EngagementTracker> = OnceLock::new();
    TRACKER.get_or_init(|| {
        let secret = std::env::temp_dir().join("herald-fuzz-tracking-secret");
        std::fs::write(&secret, "fuzzing secret").expect("a secret file");
        let config = TrackingConfig {
            enabled: true,
            base_url: "https://herald.example".into(),
            secret: Some(SecretSource::File(secret.display().to_string())),
            exclude_categories: Vec::new(),
        };
        config.tracker().expect("the secret").expect("tracking on")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let tracker = tracker();
    let _ = tracker.verify(text);
    let (notification_id, target) = text.split_once('\n').unwrap_or((text, ""));
    let tracked = Tracked {
        notification_id: notification_id.to_owned(),
        target: target.to_owned(),
        url: None,
    };
    assert_eq!(tracker.verify(&tracker.token(&tracked)), Some(tracked));
});
