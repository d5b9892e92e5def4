//! Any stand-in by its provider kind, started with an account of its own: what benchmarks
//! start by kind. One line per kind.

use crate::StandIn;

macro_rules! stand_ins {
    ($($kind:literal => $standin:ty,)*) => {
        /// The provider kinds with a stand-in.
        pub const KINDS: &[&str] = &[$($kind),*];

        /// Starts the stand-in of provider kind `kind` with an account of its own.
        pub async fn start(kind: &str) -> anyhow::Result<Box<dyn StandIn>> {
            Ok(match kind {
                $($kind => Box::new(<$standin>::start_account().await?),)*
                other => anyhow::bail!("no stand-in for provider kind {other:?}"),
            })
        }
    };
}

stand_ins! {
    "apns" => crate::apns::ApnsStandIn,
    "fcm" => crate::fcm::FcmStandIn,
    "jpush" => crate::jpush::JpushStandIn,
    "pushy" => crate::pushy::PushyStandIn,
    "sendgrid" => crate::sendgrid::SendgridStandIn,
    "twilio" => crate::twilio::TwilioStandIn,
    "vonage" => crate::vonage::VonageStandIn,
}
