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

    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }

    pub fn retry(&self, channel: Channel, tier: u32) -> String {
        format!("{}retry.{channel}.{tier}", self.prefix)
    }

    pub fn dlq(&self) -> String {
        format!("{}dlq", self.prefix)
    }

    /// The channel a channel topic or retry tier belongs to.
    pub fn channel_of(&self, topic: &str) -> Option<Channel> {
        let rest = topic.strip_prefix(&self.prefix)?;
        let name = rest.strip_prefix("channel.").or_else(|| {
            rest.strip_prefix("retry.").and_then(|r| r.rsplit_once('.')).map(|(c, _)| c)
        })?;
        name.parse().ok()
    }

    /// Every topic the pipeline reads or writes, for `herald topics create`.
    pub fn all(&self, retry_tiers: u32) -> Vec<String> {
        let mut all = vec![self.requests(), self.events(), self.dlq()];
        for channel in Channel::ALL {
            all.push(self.channel(channel));
            all.extend((1..=retry_tiers).map(|tier| self.retry(channel, tier)));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design_card() {
        let t = Topics::default();
        assert_eq!(t.requests(), "herald.requests");
        assert_eq!(t.channel(Channel::Email), "herald.channel.email");
        assert_eq!(t.retry(Channel::Sms, 2), "herald.retry.sms.2");
        assert_eq!(t.dlq(), "herald.dlq");
        assert_eq!(Topics::new("test-1.").events(), "test-1.events");
        assert_eq!(t.channel_of("herald.channel.ios"), Some(Channel::Ios));
        assert_eq!(t.channel_of("herald.retry.sms.3"), Some(Channel::Sms));
        assert_eq!(t.channel_of("herald.requests"), None);
        assert_eq!(t.channel_of("other.channel.email"), None);
    }

    #[test]
    fn channel_names_parse_back() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().ok(), Some(c));
        }
        assert!("fax".parse::<Channel>().is_err());
    }
}
