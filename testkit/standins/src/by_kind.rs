//! Any stand-in by its provider kind, started with an account of its own and answering with
//! the provider settings that reach it: the `[dispatch.providers.<name>]` table an operator
//! writes (docs/providers.md), as JSON. What benchmarks start by kind, and what the
//! dispatchers' wire tests build their providers from.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// A running stand-in with an account of its own.
pub trait StandIn: Send + Sync {
    /// Sends accepted so far.
    fn accepted(&self) -> usize;
    /// Forgets what was accepted (a benchmark's next round).
    fn clear(&self);
    /// Every send is answered after `latency` (the provider's processing time).
    fn set_latency(&self, latency: Duration);
    /// The next send meets the provider's rate limit (429 or its equivalent).
    fn throttle_once(&self);
    /// The next send meets the provider's outage (5xx or its equivalent).
    fn fail_once(&self);
    /// `target`, as the provider receives it, is gone from now on.
    fn kill(&self, target: &str);
    /// The provider settings that reach this stand-in, its secrets written as files under
    /// `secrets`.
    fn settings(&self, secrets: &Path) -> anyhow::Result<Value>;
}

/// The provider kinds with a stand-in.
pub const KINDS: [&str; 7] = ["apns", "fcm", "jpush", "pushy", "sendgrid", "twilio", "vonage"];

/// Starts the stand-in of provider kind `kind` with an account of its own.
pub async fn start(kind: &str) -> anyhow::Result<Box<dyn StandIn>> {
    Ok(match kind {
        "apns" => Box::new(crate::apns::ApnsStandIn::start_account().await?),
        "fcm" => Box::new(crate::fcm::FcmStandIn::start_account().await?),
        "jpush" => Box::new(crate::jpush::JpushStandIn::start_account().await?),
        "pushy" => Box::new(crate::pushy::PushyStandIn::start_account().await?),
        "sendgrid" => Box::new(crate::sendgrid::SendgridStandIn::start_account().await?),
        "twilio" => Box::new(crate::twilio::TwilioStandIn::start_account().await?),
        "vonage" => Box::new(crate::vonage::VonageStandIn::start_account().await?),
        other => anyhow::bail!("no stand-in for provider kind {other:?}"),
    })
}

/// Writes `value` to the file `name` under `dir`; the secret source naming it.
pub(crate) fn secret_file(dir: &Path, name: &str, value: &str) -> anyhow::Result<Value> {
    let path = dir.join(name);
    std::fs::write(&path, value)?;
    Ok(serde_json::json!({ "file": path.display().to_string() }))
}

/// The `Account` methods of a stand-in that keeps its sends in a `Recorder`.
macro_rules! recorded_account {
    () => {
        fn accepted(&self) -> usize {
            self.recorder.accepted_count()
        }
        fn clear(&self) {
            self.recorder.clear();
        }
        fn set_latency(&self, latency: std::time::Duration) {
            self.recorder.set_latency(latency);
        }
        fn throttle_once(&self) {
            self.recorder.throttle(1);
        }
        fn fail_once(&self) {
            self.recorder.fail(1);
        }
        fn kill(&self, target: &str) {
            self.recorder.unregister(target);
        }
    };
}
pub(crate) use recorded_account;
