//! Deciding, for one request and what the directory knows about its recipient, which
//! deliveries to make and which to skip (with the reason). Pure: no I/O, so every rule is
//! tested directly.

use herald_schemas::{
    Channel, ChannelMessage, DeliveryEvent, EventKind, Fallback, NotificationRequest,
    RequestedChannel, targets,
};

use crate::config::Rules;
use crate::directory::{Device, Platform, Profile};
use crate::quiet::QuietHours;

/// Why a delivery was not made; the `reason` of the `skipped` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    UnknownUser,
    UnknownChannel,
    NoContent,
    OptedOut,
    NoAddress,
    NoDevice,
    Expired,
    FrequencyCapped,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::UnknownUser => "unknown_user",
            SkipReason::UnknownChannel => "unknown_channel",
            SkipReason::NoContent => "no_content",
            SkipReason::OptedOut => "opted_out",
            SkipReason::NoAddress => "no_address",
            SkipReason::NoDevice => "no_device",
            SkipReason::Expired => "expired",
            SkipReason::FrequencyCapped => "frequency_capped",
        }
    }

    pub fn parse(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == reason)
    }

    pub const ALL: [SkipReason; 8] = [
        SkipReason::UnknownUser,
        SkipReason::UnknownChannel,
        SkipReason::NoContent,
        SkipReason::OptedOut,
        SkipReason::NoAddress,
        SkipReason::NoDevice,
        SkipReason::Expired,
        SkipReason::FrequencyCapped,
    ];
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub messages: Vec<(Channel, ChannelMessage)>,
    pub events: Vec<DeliveryEvent>,
    /// What quiet hours hold back: the request again, for its deferred channels, with
    /// `send_at` at the end of the user's quiet hours (it waits in the delay tiers).
    pub deferred: Option<NotificationRequest>,
}

impl Plan {
    pub(crate) fn skip(
        &mut self,
        request: &NotificationRequest,
        channel: Option<&str>,
        reason: SkipReason,
    ) {
        let mut event = DeliveryEvent::new(&request.notification_id, EventKind::Skipped);
        event.channel = channel.map(str::to_owned);
        event.user_id = request.recipient.user_id.clone();
        event.reason = Some(reason.as_str().to_owned());
        self.events.push(event);
    }

    fn route(
        &mut self,
        request: &NotificationRequest,
        channel_route: (Channel, &str),
        target: (&str, Option<&str>),
        fallback: Option<&Fallback>,
    ) {
        if let Some(error) = target_error(channel_route.0, target.0) {
            self.fail_target(request, channel_route.0, target.0, error);
            return;
        }
        let message = channel_message(request, channel_route, target, fallback);
        self.add(channel_route.0, message);
    }

    /// A `failed` event for a target no provider could deliver to: services producing
    /// Avro directly skip the send API's checks, so they are made again here.
    fn fail_target(
        &mut self,
        request: &NotificationRequest,
        channel: Channel,
        target: &str,
        error: String,
    ) {
        let mut event = DeliveryEvent::new(&request.notification_id, EventKind::Failed);
        event.channel = Some(channel.as_str().to_owned());
        event.target = Some(target.to_owned());
        event.user_id = request.recipient.user_id.clone();
        event.reason = Some(INVALID_TARGET.to_owned());
        event.detail.insert("error".into(), error);
        self.events.push(event);
    }

    fn add(&mut self, channel: Channel, message: ChannelMessage) {
        let mut event = DeliveryEvent::new(&message.notification_id, EventKind::Routed);
        event.channel = Some(channel.as_str().to_owned());
        event.target = Some(message.target.clone());
        event.user_id = message.user_id.clone();
        if let Some(from) = message.metadata.get("fallback_from") {
            event.detail.insert("fallback_from".into(), from.clone());
        }
        self.events.push(event);
        self.messages.push((channel, message));
    }
}

/// The `reason` of the `failed` event of a target that is not an address, number or token.
pub const INVALID_TARGET: &str = "invalid_target";

/// Why `target` cannot be delivered to on `channel`, if it cannot: the send API's checks.
fn target_error(channel: Channel, target: &str) -> Option<String> {
    match channel {
        Channel::Email => targets::email_error(target),
        Channel::Sms => targets::phone_number_error(target),
        Channel::Ios | Channel::Android => targets::device_token_error(channel.as_str(), target),
    }
}

/// The message for one target of `request` on `channel`.
fn channel_message(
    request: &NotificationRequest,
    (channel, route): (Channel, &str),
    (target, app_id): (&str, Option<&str>),
    fallback: Option<&Fallback>,
) -> ChannelMessage {
    ChannelMessage {
        notification_id: request.notification_id.clone(),
        channel: channel.as_str().to_owned(),
        target: target.to_owned(),
        user_id: request.recipient.user_id.clone(),
        app_id: app_id.map(str::to_owned),
        route: route.to_owned(),
        category: request.category.clone(),
        accepted_at: request.accepted_at,
        from: request.from.clone(),
        email: if channel == Channel::Email { request.email.clone() } else { None },
        sms: if channel == Channel::Sms { request.sms.clone() } else { None },
        push: if matches!(channel, Channel::Ios | Channel::Android) {
            request.push.clone()
        } else {
            None
        },
        metadata: request.metadata.clone(),
        fallback: fallback.cloned(),
        priority: request.priority.clone(),
        expires_at: request.expires_at,
        collapse_key: request.collapse_key.clone(),
    }
}

fn has_content(request: &NotificationRequest, channel: &str) -> bool {
    match channel {
        "email" => request.email.is_some(),
        "sms" => request.sms.is_some(),
        "push" => request.push.is_some(),
        _ => false,
    }
}

/// The requested channels, or every channel the request carries content for.
fn requested_channels(request: &NotificationRequest) -> Vec<&str> {
    if request.channels.is_empty() {
        RequestedChannel::ALL
            .map(RequestedChannel::as_str)
            .into_iter()
            .filter(|c| has_content(request, c))
            .collect()
    } else {
        request.channels.iter().map(String::as_str).collect()
    }
}

/// The requested channel (email, sms, push) a dispatch channel's message serves.
pub fn requested_channel(dispatch: Channel) -> &'static str {
    match dispatch {
        Channel::Email => "email",
        Channel::Sms => "sms",
        Channel::Ios | Channel::Android => "push",
    }
}

impl Plan {
    /// The requested channels this plan sends on, each once.
    pub fn requested_channels(&self) -> Vec<&'static str> {
        let mut channels: Vec<_> =
            self.messages.iter().map(|(c, _)| requested_channel(*c)).collect();
        channels.sort_unstable();
        channels.dedup();
        channels
    }

    /// Takes `channel` (a requested channel) out of the plan: its messages and their
    /// `routed` events, with one `skipped` event saying why.
    pub fn drop_channel(
        &mut self,
        request: &NotificationRequest,
        channel: &str,
        reason: SkipReason,
    ) {
        let dropped: Vec<String> = self
            .messages
            .iter()
            .filter(|(c, _)| requested_channel(*c) == channel)
            .map(|(_, m)| m.target.clone())
            .collect();
        self.messages.retain(|(c, _)| requested_channel(*c) != channel);
        self.events.retain(|e| {
            let routed_here = e.kind == EventKind::Routed
                && e.channel.as_deref().and_then(|c| c.parse().ok()).map(requested_channel)
                    == Some(channel)
                && e.target.as_ref().is_some_and(|t| dropped.contains(t));
            !routed_here
        });
        self.skip(request, Some(channel), reason);
    }
}

/// [`plan_at`] now.
pub fn plan(request: &NotificationRequest, profile: Option<&Profile>, rules: &Rules) -> Plan {
    plan_at(request, profile, rules, herald_schemas::now_millis())
}

/// When the user's quiet hours, if they are in them at `now_ms`, end.
fn quiet_until(profile: Option<&Profile>, now_ms: i64) -> Option<i64> {
    let user = &profile?.user;
    let quiet = QuietHours::parse(user.quiet_hours.as_deref()?).ok()?;
    quiet.ends_after(now_ms, user.timezone.as_deref().unwrap_or("UTC"))
}

/// Plans the deliveries of `request` at `now_ms`. `profile` is the directory's view of the
/// recipient when the request names a user id (`None` when the directory does not know the
/// user); the recipient's region chooses each message's route.
pub fn plan_at(
    request: &NotificationRequest,
    profile: Option<&Profile>,
    rules: &Rules,
    now_ms: i64,
) -> Plan {
    let mut plan = Plan::default();
    let critical = rules.is_critical(&request.category);
    let quiet_until = if critical { None } else { quiet_until(profile, now_ms) };
    let mut deferred = Vec::new();
    let region = profile.and_then(|p| p.user.region.as_deref());
    let to = |channel: Channel| (channel, rules.routes.route(channel, region));
    let address = |channel: Channel| match (channel, profile) {
        (Channel::Email, Some(p)) => p.user.email.as_deref(),
        (Channel::Email, None) => request.recipient.email.as_deref(),
        (Channel::Sms, Some(p)) => p.user.phone.as_deref(),
        (Channel::Sms, None) => request.recipient.phone.as_deref(),
        (Channel::Ios | Channel::Android, _) => None,
    };
    let known_user = request.recipient.user_id.is_some();
    if known_user && profile.is_none() {
        plan.skip(request, None, SkipReason::UnknownUser);
        return plan;
    }
    for channel in requested_channels(request) {
        if !RequestedChannel::is_name(channel) {
            plan.skip(request, Some(channel), SkipReason::UnknownChannel);
            continue;
        }
        if !has_content(request, channel) {
            plan.skip(request, Some(channel), SkipReason::NoContent);
            continue;
        }
        let opted_out = profile.is_some_and(|p| {
            p.preferences.iter().any(|pref| {
                pref.channel == channel && pref.category == request.category && !pref.opted_in
            })
        });
        if opted_out && !critical {
            plan.skip(request, Some(channel), SkipReason::OptedOut);
            continue;
        }
        // Email does not wake anyone; pushes and texts wait for the morning.
        if quiet_until.is_some() && matches!(channel, "push" | "sms") {
            deferred.push(channel.to_owned());
            continue;
        }
        match channel {
            "email" | "sms" => {
                let dispatch = if channel == "email" { Channel::Email } else { Channel::Sms };
                match address(dispatch) {
                    Some(address) => plan.route(request, to(dispatch), (address, None), None),
                    None => plan.skip(request, Some(channel), SkipReason::NoAddress),
                }
            }
            _ => {
                // A fallback to an address no provider could take is no fallback.
                let fallback = rules.fallbacks.for_push(&request.category).and_then(|to| {
                    let target = address(to).filter(|a| target_error(to, a).is_none())?;
                    Some(Fallback { channel: to.as_str().to_owned(), target: target.to_owned() })
                });
                let raw_device = request.recipient.device.as_ref().and_then(|d| {
                    Some(Device {
                        device_id: String::new(),
                        platform: d.platform.parse().ok()?,
                        token: d.token.clone(),
                        app_id: d.app_id.clone(),
                        active: true,
                    })
                });
                let devices: Vec<_> = profile
                    .iter()
                    .flat_map(|p| &p.devices)
                    .chain(raw_device.as_ref())
                    .filter(|d| d.active)
                    .collect();
                if devices.is_empty() {
                    plan.skip(request, Some(channel), SkipReason::NoDevice);
                    // No device to try: the fallback now, as the push would have become.
                    let mut push = channel_message(
                        request,
                        (Channel::Android, "default"),
                        ("", None),
                        fallback.as_ref(),
                    );
                    push.channel = "push".into();
                    if let Some((to, message)) = push.fallback_message() {
                        plan.add(to, message);
                    }
                }
                for device in devices {
                    let dispatch = match device.platform {
                        Platform::Ios => Channel::Ios,
                        Platform::Android => Channel::Android,
                    };
                    let target = (device.token.as_str(), device.app_id.as_deref());
                    plan.route(request, to(dispatch), target, fallback.as_ref());
                }
            }
        }
    }
    if let (Some(until), false) = (quiet_until, deferred.is_empty()) {
        for channel in &deferred {
            let mut event = DeliveryEvent::new(&request.notification_id, EventKind::Scheduled);
            event.channel = Some(channel.clone());
            event.user_id = request.recipient.user_id.clone();
            event.reason = Some("quiet_hours".into());
            event.detail.insert("send_at".into(), until.to_string());
            plan.events.push(event);
        }
        plan.deferred = Some(NotificationRequest {
            channels: deferred,
            send_at: Some(until),
            ..request.clone()
        });
    }
    plan
}

#[cfg(test)]
#[path = "fanout_tests.rs"]
mod tests;
