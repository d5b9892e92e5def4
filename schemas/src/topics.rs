//! Topic names, all under one configurable prefix (default `herald.`).

use std::fmt;
use std::str::FromStr;

/// A dispatch channel: one topic and one dispatcher consumer group each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Email,
    Sms,
    Ios,
    Android,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::Sms, Channel::Ios, Channel::Android];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Ios => "ios",
            Channel::Android => "android",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Channel {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown channel {0:?}: expected one of email, sms, ios, android")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownChannel(s.to_owned()))
    }
}

/// A channel a caller asks for: `push` stands for both push platforms, the dispatch
/// channels `ios` and `android`, chosen per device by the enricher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestedChannel {
    Email,
    Sms,
    Push,
}

impl RequestedChannel {
    pub const ALL: [RequestedChannel; 3] =
        [RequestedChannel::Email, RequestedChannel::Sms, RequestedChannel::Push];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestedChannel::Email => "email",
            RequestedChannel::Sms => "sms",
            RequestedChannel::Push => "push",
        }
    }

    /// Whether `name` is one a caller may ask for.
    pub fn is_name(name: &str) -> bool {
        name.parse::<Self>().is_ok()
    }
}

impl fmt::Display for RequestedChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown channel {0:?}: use email, sms or push")]
pub struct UnknownRequestedChannel(pub String);

impl FromStr for RequestedChannel {
    type Err = UnknownRequestedChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RequestedChannel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownRequestedChannel(s.to_owned()))
    }
}

/// Traffic kept apart end to end so that a marketing blast never delays a sign-in code:
/// each lane has its own request and channel topics and its own consumer groups, so neither
/// waits in the other's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// High priority: security codes, transactional messages (the default lane).
    Urgent,
    /// Normal priority: marketing, digests, anything that can wait its turn.
    Bulk,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Urgent, Lane::Bulk];

    pub fn of(priority: crate::Priority) -> Self {
        match priority {
            crate::Priority::High => Lane::Urgent,
            crate::Priority::Normal => Lane::Bulk,
        }
    }

    /// What the lane adds to topic and group names: nothing for the urgent lane, so its
    /// names are the design card's.
    pub fn suffix(self) -> &'static str {
        match self {
            Lane::Urgent => "",
            Lane::Bulk => ".bulk",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Urgent => "urgent",
            Lane::Bulk => "bulk",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self::new("herald.")
    }
}

impl Topics {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn requests(&self) -> String {
        format!("{}requests", self.prefix)
    }

    pub fn channel(&self, channel: Channel) -> String {
        format!("{}channel.{channel}", self.prefix)
    }

    /// `herald.requests` or `herald.requests.bulk`.
    pub fn requests_in(&self, lane: Lane) -> String {
        format!("{}{}", self.requests(), lane.suffix())
    }

    /// `herald.channel.<channel>` or `herald.channel.<channel>.bulk`.
    pub fn channel_in(&self, channel: Channel, lane: Lane) -> String {
        format!("{}{}", self.channel(channel), lane.suffix())
    }

    /// The template ids the directory holds (compacted; key = id, no value = removed), so
    /// the send API can refuse an unknown `template_id` without reading the directory.
    pub fn templates(&self) -> String {
        format!("{}templates", self.prefix)
    }

    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// What the dispatchers learned that the enricher's directory must apply (a device token
    /// a provider reported dead), apart from `events` so that the enricher reads only these
    /// and not every state change of every notification.
    pub fn directory_updates(&self) -> String {
        format!("{}directory.updates", self.prefix)
    }

    /// Changes to the directory's users, devices and preferences (compacted; key = user id;
    /// no value = the user erased), applied by the enricher: the way into the directory for
    /// the directory API, `herald directory import` and services producing them.
    pub fn directory_changes(&self) -> String {
        format!("{}directory.changes", self.prefix)
    }

    pub fn retry(&self, channel: Channel, tier: u32) -> String {
        format!("{}retry.{channel}.{tier}", self.prefix)
    }

    /// Where a status webhook that failed waits before its attempt `tier + 1`.
    pub fn webhook_retry(&self, tier: u32) -> String {
        format!("{}retry.webhooks.{tier}", self.prefix)
    }

    pub fn dlq(&self) -> String {
        format!("{}dlq", self.prefix)
    }

    /// Which dead letters were redriven (compacted; key = `partition:offset` in the
    /// dead-letter topic, value = when, ms), so that a redrive does not repeat itself.
    pub fn dlq_redriven(&self) -> String {
        format!("{}dlq.redriven", self.prefix)
    }

    /// The channel a channel topic or retry tier belongs to.
    pub fn channel_of(&self, topic: &str) -> Option<Channel> {
        let rest = topic.strip_prefix(&self.prefix)?;
        let name = rest
            .strip_prefix("channel.")
            .map(|c| c.strip_suffix(Lane::Bulk.suffix()).unwrap_or(c))
            .or_else(|| {
                rest.strip_prefix("retry.").and_then(|r| r.rsplit_once('.')).map(|(c, _)| c)
            })?;
        name.parse().ok()
    }

    /// A delay tier of scheduled requests: every record in it waits the same time.
    pub fn delay(&self, tier: &DelayTier) -> String {
        format!("{}delay.{}", self.prefix, tier.name)
    }

    /// Where a request to send at `send_at` goes at `now`, and when it is due there: a delay
    /// tier, or its lane's requests topic once it is due. Never early: its last wait is in
    /// the shortest tier, due at `send_at` itself.
    pub fn next_stop(&self, send_at: i64, lane: Lane, now: i64) -> (String, Option<i64>) {
        match delay_stop(send_at, now) {
            Some((tier, due_at)) => (self.delay(tier), Some(due_at)),
            None => (self.requests_in(lane), None),
        }
    }

    /// Every topic the pipeline reads or writes, for `herald topics create`.
    pub fn all(&self, retry_tiers: u32) -> Vec<String> {
        let mut all = vec![
            self.events(),
            self.dlq(),
            self.dlq_redriven(),
            self.templates(),
            self.directory_updates(),
            self.directory_changes(),
        ];
        all.extend(Lane::ALL.map(|lane| self.requests_in(lane)));
        all.extend(DELAY_TIERS.iter().map(|tier| self.delay(tier)));
        for channel in Channel::ALL {
            all.extend(Lane::ALL.map(|lane| self.channel_in(channel, lane)));
            all.extend((1..=retry_tiers).map(|tier| self.retry(channel, tier)));
        }
        all.extend((1..=retry_tiers).map(|tier| self.webhook_retry(tier)));
        all
    }
}

/// The record types Herald writes through the codec, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireRecord {
    NotificationRequest,
    ChannelMessage,
    DeliveryEvent,
    DirectoryChange,
}

impl WireRecord {
    pub fn name(self) -> &'static str {
        match self {
            WireRecord::NotificationRequest => "NotificationRequest",
            WireRecord::ChannelMessage => "ChannelMessage",
            WireRecord::DeliveryEvent => "DeliveryEvent",
            WireRecord::DirectoryChange => "DirectoryChange",
        }
    }
}

impl Topics {
    /// Every topic Herald encodes records for, with the record it carries: the subjects
    /// (`<topic>-value`) its schemas live under. Retry tiers, the dead-letter topic and
    /// replays carry copies of records written here, framed with their original ids.
    pub fn written_records(&self) -> Vec<(String, WireRecord)> {
        let mut written = vec![
            (self.events(), WireRecord::DeliveryEvent),
            (self.directory_updates(), WireRecord::DeliveryEvent),
            (self.directory_changes(), WireRecord::DirectoryChange),
        ];
        for lane in Lane::ALL {
            written.push((self.requests_in(lane), WireRecord::NotificationRequest));
            for channel in Channel::ALL {
                written.push((self.channel_in(channel, lane), WireRecord::ChannelMessage));
            }
        }
        written
            .extend(DELAY_TIERS.iter().map(|t| (self.delay(t), WireRecord::NotificationRequest)));
        written
    }
}

/// A delay topic for scheduled requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayTier {
    pub name: &'static str,
    pub delay_ms: i64,
}

/// Scheduled requests hop down these tiers: one record waits a fixed time in each, so the
/// records of a partition come due in order and a pause never holds an earlier one back.
pub const DELAY_TIERS: [DelayTier; 6] = [
    DelayTier { name: "1s", delay_ms: 1_000 },
    DelayTier { name: "10s", delay_ms: 10_000 },
    DelayTier { name: "1m", delay_ms: 60_000 },
    DelayTier { name: "10m", delay_ms: 600_000 },
    DelayTier { name: "1h", delay_ms: 3_600_000 },
    DelayTier { name: "1d", delay_ms: 86_400_000 },
];

/// Where a request due in `remaining_ms` waits next: the longest tier that does not
/// overshoot; `None` when it is due within the shortest.
pub fn delay_tier_for(remaining_ms: i64) -> Option<&'static DelayTier> {
    DELAY_TIERS.iter().rev().find(|tier| tier.delay_ms <= remaining_ms)
}

/// The delay tier a request to send at `send_at` waits in at `now`, and when it is due
/// there; `None`: send it now. Never early: its last wait is in the shortest tier, due at
/// `send_at` itself.
pub fn delay_stop(send_at: i64, now: i64) -> Option<(&'static DelayTier, i64)> {
    let remaining = send_at - now;
    match delay_tier_for(remaining) {
        Some(tier) => Some((tier, now + tier.delay_ms)),
        None if remaining > 0 => Some((&DELAY_TIERS[0], send_at)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_requests_wait_in_the_longest_tier_that_does_not_overshoot() {
        assert_eq!(delay_tier_for(999), None);
        assert_eq!(delay_tier_for(1_000).map(|t| t.name), Some("1s"));
        assert_eq!(delay_tier_for(59_999).map(|t| t.name), Some("10s"));
        assert_eq!(delay_tier_for(30 * 86_400_000).map(|t| t.name), Some("1d"));
        assert_eq!(Topics::default().delay(&DELAY_TIERS[0]), "herald.delay.1s");
    }

    #[test]
    fn names_follow_the_design_card() {
        let t = Topics::default();
        assert_eq!(t.requests(), "herald.requests");
        assert_eq!(t.channel(Channel::Email), "herald.channel.email");
        assert_eq!(t.retry(Channel::Sms, 2), "herald.retry.sms.2");
        assert_eq!(t.dlq(), "herald.dlq");
        assert_eq!(Topics::new("test-1.").events(), "test-1.events");
        assert_eq!(t.channel_of("herald.channel.ios"), Some(Channel::Ios));
        assert_eq!(t.channel_of("herald.channel.ios.bulk"), Some(Channel::Ios));
        assert_eq!(t.requests_in(Lane::Bulk), "herald.requests.bulk");
        assert_eq!(t.requests_in(Lane::Urgent), "herald.requests");
        assert_eq!(t.channel_in(Channel::Sms, Lane::Bulk), "herald.channel.sms.bulk");
        assert_eq!(t.channel_of("herald.retry.sms.3"), Some(Channel::Sms));
        assert_eq!(t.channel_of("herald.requests"), None);
        assert_eq!(t.channel_of("other.channel.email"), None);
        assert_eq!(t.directory_updates(), "herald.directory.updates");
        assert_eq!(t.channel_of("herald.directory.updates"), None);
        assert!(t.all(3).contains(&t.directory_updates()), "created by topics apply");
        assert_eq!(t.directory_changes(), "herald.directory.changes");
        assert!(t.all(3).contains(&t.directory_changes()), "created by topics apply");
    }

    #[test]
    fn channel_names_parse_back() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().ok(), Some(c));
        }
        assert!("fax".parse::<Channel>().is_err());
    }
}
