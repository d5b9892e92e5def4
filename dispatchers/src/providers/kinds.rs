//! The provider kinds: one line each, naming the kind (its `kind = "..."` in the
//! configuration) and its settings type, which says the rest (`ProviderKind`).

use std::sync::Arc;

use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

use super::{BuildError, Provider, ProviderKind, ProviderLimits};

macro_rules! kinds {
    ($($(#[$doc:meta])* $kind:ident: $variant:ident($settings:ty),)*) => {
        /// One provider account; `kind` says which API it speaks.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum ProviderConfig {
            $($(#[$doc])* $variant($settings),)*
        }

        impl ProviderConfig {
            /// The kind, as `kind = "..."` names it.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($kind),)*
                }
            }

            fn settings(&self) -> &dyn ProviderKind {
                match self {
                    $(Self::$variant(settings) => settings,)*
                }
            }
        }
    };
}

kinds! {
    /// Another SMTP relay, configured like `[dispatch.email]`.
    smtp: Smtp(super::smtp::EmailConfig),
    /// SendGrid v3 mail/send (email).
    sendgrid: Sendgrid(super::sendgrid::SendgridSettings),
    /// Firebase Cloud Messaging HTTP v1 (android).
    fcm: Fcm(super::fcm::FcmSettings),
    /// Apple Push Notification service, HTTP/2 (ios).
    apns: Apns(super::apns::ApnsSettings),
    /// JPush (Jiguang) push API v3: android and ios where FCM is unreachable (China).
    jpush: Jpush(super::jpush::JpushSettings),
    /// Pushy: MQTT-based push for android where FCM is unreachable.
    pushy: Pushy(super::pushy::PushySettings),
    /// Twilio Programmable Messaging (sms).
    twilio: Twilio(super::twilio::TwilioSettings),
    /// Vonage (Nexmo) SMS API (sms).
    vonage: Vonage(super::vonage::VonageSettings),
    /// Records instead of sending.
    sandbox: Sandbox(super::sandbox::SandboxSettings),
}

impl ProviderConfig {
    /// The channels this account can serve.
    pub fn channels(&self) -> Vec<Channel> {
        self.settings().channels()
    }

    /// The account's limits; an SMTP relay's come from its pool and `[dispatch.email]`.
    pub fn limits(&self) -> ProviderLimits {
        self.settings().limits()
    }

    /// The account called `name`, ready to send.
    pub fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildError> {
        self.settings().build(name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_kind_is_named_as_its_configuration_writes_it() {
        let sandbox: ProviderConfig =
            serde_json::from_value(serde_json::json!({"kind": "sandbox", "channel": "sms"}))
                .unwrap();
        assert_eq!(sandbox.kind(), "sandbox");
        assert_eq!(sandbox.channels(), vec![Channel::Sms]);
        let relay: ProviderConfig =
            serde_json::from_value(serde_json::json!({"kind": "smtp"})).unwrap();
        assert_eq!(relay.kind(), "smtp");
        let written = serde_json::to_value(&relay).unwrap();
        assert_eq!(written["kind"], relay.kind());
    }
}
