//! Any stand-in by its provider kind, started with an account of its own: what benchmarks
//! start by kind.

use crate::StandIn;

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
