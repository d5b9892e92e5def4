//! The contract every provider keeps with its stand-in, each kind's test in its folder: a
//! plain send is accepted in the request shape the provider documents; a rate limit and an
//! outage are retried; a gone target is dead (push) or failed for good (SMS). The provider
//! is built from the settings an operator would write to reach the stand-in.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use herald_schemas::{ChannelMessage, PushContent, SmsContent};
use herald_standins::StandIn;

use super::{DeliveryError, Provider, ProviderConfig};

/// What a send to a gone target must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Gone {
    /// A push token: reported dead, so the directory stops targeting it.
    DeadTarget,
    /// A number that refuses messages: failed for good.
    Permanent,
}

/// The provider that `standin`'s settings configure, built as the dispatcher builds it.
pub(crate) fn provider_for(standin: &dyn StandIn, kind: &str) -> Arc<dyn Provider> {
    herald_schemas::install_tls_provider();
    let secrets = tempfile::tempdir().unwrap();
    let settings: ProviderConfig =
        serde_json::from_value(standin.settings(secrets.path()).unwrap())
            .unwrap_or_else(|e| panic!("the stand-in's settings are {kind} settings: {e}"));
    assert_eq!(settings.kind(), kind);
    // The secrets are read at build time.
    settings.build(kind).unwrap_or_else(|e| panic!("building {kind}: {e}"))
}

/// `on_the_wire` is the target as the provider writes it (Vonage drops the `+` of an E.164
/// number).
pub(crate) async fn keeps_the_wire_contract(
    provider: &dyn Provider,
    standin: &dyn StandIn,
    (message, on_the_wire): (&ChannelMessage, &str),
    gone: Gone,
) {
    let before = standin.accepted();
    provider.send(message).await.unwrap_or_else(|e| panic!("a plain send: {e}"));
    assert_eq!(standin.accepted(), before + 1, "the stand-in accepted the request's shape");

    standin.throttle_once();
    let throttled = provider.send(message).await.unwrap_err();
    assert!(throttled.is_retryable(), "a rate limit is retried: {throttled}");
    provider.send(message).await.unwrap_or_else(|e| panic!("after the rate limit: {e}"));

    standin.fail_once();
    let outage = provider.send(message).await.unwrap_err();
    assert!(outage.is_retryable(), "an outage is retried: {outage}");
    provider.send(message).await.unwrap_or_else(|e| panic!("after the outage: {e}"));

    standin.kill(on_the_wire);
    let dead = provider.send(message).await.unwrap_err();
    match (gone, &dead) {
        (Gone::DeadTarget, DeliveryError::DeadTarget { .. })
        | (Gone::Permanent, DeliveryError::Permanent { .. }) => {}
        _ => panic!("a gone target must be {gone:?}, not {dead}"),
    }
    assert_eq!(standin.accepted(), before + 3, "faults accepted nothing");
}

pub(crate) fn sms(to: &str) -> ChannelMessage {
    ChannelMessage {
        notification_id: "n-wire-1".into(),
        channel: "sms".into(),
        target: to.into(),
        route: "default".into(),
        category: "security".into(),
        sms: Some(SmsContent { text: "Your code is 482913".into() }),
        ..ChannelMessage::default()
    }
}

pub(crate) fn email(to: &str) -> ChannelMessage {
    ChannelMessage {
        notification_id: "n-wire-3".into(),
        channel: "email".into(),
        target: to.into(),
        route: "default".into(),
        category: "transactional".into(),
        email: Some(herald_schemas::EmailContent {
            subject: "Order shipped".into(),
            text: Some("It is on its way".into()),
            html: None,
        }),
        ..ChannelMessage::default()
    }
}

pub(crate) fn push(channel: &str, token: &str) -> ChannelMessage {
    ChannelMessage {
        notification_id: "n-wire-2".into(),
        channel: channel.into(),
        target: token.into(),
        route: "default".into(),
        category: "transactional".into(),
        push: Some(PushContent {
            title: Some("Order shipped".into()),
            body: "It is on its way".into(),
            data: BTreeMap::from([("order".into(), "42".into())]),
        }),
        ..ChannelMessage::default()
    }
}
