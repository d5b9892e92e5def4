//! `herald dlq list|show|redrive`: reading the dead-letter topic and putting records back.
//!
//! Redrive sends a channel's dead letters to that channel's first retry tier, due at once:
//! they never queue in front of live traffic on the channel topic, and the delivery ledger
//! keeps a record that was delivered meanwhile from being sent twice. Other dead letters
//! (e.g. undecodable requests) go back to the topic they came from.

use std::time::Duration;

use anyhow::Context;
use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{
    ChangeMode, Header, Headers, Message, OwnedHeaders, OwnedMessage, Producer, header_str,
    headers_replacing, watermarks,
};
use herald_schemas::{
    AvroCodec, ChannelMessage, DeliveryEvent, NotificationRequest, Record, Topics, headers,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A dead letter's class, as `--class` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Class {
    /// Undecodable records: redriving them as they are dead-letters them again.
    Poison,
    /// Refused for good by the provider.
    Permanent,
    /// Every retry tier used up.
    #[value(name = "retries_exhausted", alias = "retries-exhausted")]
    RetriesExhausted,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Poison => "poison",
            Class::Permanent => "permanent",
            Class::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// Which dead letters a command applies to.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub channel: Option<String>,
    /// Substring of the failure reason.
    pub reason: Option<String>,
    pub class: Option<Class>,
    /// Consumer group that gave up on the record.
    pub group: Option<String>,
    /// Failed at or after (ms since the epoch).
    pub since: Option<i64>,
    /// Failed before (ms since the epoch).
    pub until: Option<i64>,
}

/// A dead letter as the tools see it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub record: OwnedMessage,
    /// When it was redriven (ms), if it was.
    pub redriven_at: Option<i64>,
    pub class: String,
    pub reason: String,
    pub origin: String,
    pub group: String,
    pub failed_at: i64,
    pub notification_id: Option<String>,
    pub channel: Option<String>,
}

impl DeadLetter {
    fn from_record(record: OwnedMessage, topics: &Topics) -> Self {
        let text = |name| header_str(&record, name).unwrap_or_default().to_owned();
        let origin = text(headers::ORIGINAL_TOPIC);
        let channel = topics.channel_of(&origin).map(|c| c.as_str().to_owned());
        let failed_at = header_str(&record, headers::FAILED_AT)
            .and_then(|t| t.parse().ok())
            .or_else(|| record.timestamp().to_millis())
            .unwrap_or_default();
        Self {
            class: text(headers::ERROR_CLASS),
            reason: text(headers::ERROR_REASON),
            group: text(headers::FAILED_GROUP),
            notification_id: header_str(&record, headers::NOTIFICATION_ID).map(str::to_owned),
            origin,
            channel,
            failed_at,
            record,
            redriven_at: None,
        }
    }

    /// `partition:offset` in the dead-letter topic.
    pub fn position(&self) -> String {
        format!("{}:{}", self.record.partition(), self.record.offset())
    }

    fn matches(&self, filter: &Filter) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == have)
        };
        eq(&filter.channel, self.channel.as_deref())
            && filter.class.is_none_or(|class| class.as_str() == self.class)
            && eq(&filter.group, Some(&self.group))
            && filter.reason.as_deref().is_none_or(|r| self.reason.contains(r))
            && filter.since.is_none_or(|since| self.failed_at >= since)
            && filter.until.is_none_or(|until| self.failed_at < until)
    }
}

/// Parses `--since`/`--until`: an RFC 3339 time, or a duration meaning that long ago.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        let since_epoch = time.duration_since(std::time::UNIX_EPOCH)?;
        return Ok(i64::try_from(since_epoch.as_millis())?);
    }
    let ago = humantime::parse_duration(text)
        .with_context(|| format!("{text:?} is neither an RFC 3339 time nor a duration like 2h"))?;
    Ok(herald_schemas::now_millis() - i64::try_from(ago.as_millis())?)
}

/// The group id (after `kafka.group_prefix`) of the dead-letter commands' reader.
pub const TOOL_GROUP: &str = "dlq-tool";

/// A consumer for reading topics by position; it joins no group and commits nothing.
pub(crate) fn reader(kafka: &KafkaConfig, tool: &str) -> anyhow::Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    for (key, value) in kafka.client_properties()? {
        config.set(key, value);
    }
    config.set("group.id", tool).set("enable.auto.commit", "false").set("client.id", tool);
    Ok(config.create()?)
}

/// Every dead letter matching `filter`, oldest first per partition, each with when it was
/// redriven, if it was.
pub fn read(kafka: &KafkaConfig, filter: &Filter) -> anyhow::Result<Vec<DeadLetter>> {
    let topics = kafka.topics();
    let redriven = redriven(kafka)?;
    let mut found = Vec::new();
    read_topic(kafka, &topics.dlq(), |message| {
        let mut letter = DeadLetter::from_record(message, &topics);
        if letter.matches(filter) {
            letter.redriven_at = redriven.get(&letter.position()).copied();
            found.push(letter);
        }
    })?;
    Ok(found)
}

/// Which dead letters were redriven, by position, and when (the latest time).
fn redriven(kafka: &KafkaConfig) -> anyhow::Result<std::collections::HashMap<String, i64>> {
    let mut marks = std::collections::HashMap::new();
    read_topic(kafka, &kafka.topics().dlq_redriven(), |message| {
        let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned());
        let at = message.payload().and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
        if let (Some(key), Some(at)) = (key, at) {
            marks.insert(key, at);
        }
    })?;
    Ok(marks)
}

/// Every record of `topic` from its start to its end now, to `each`, partition by partition
/// in order. A topic not there yet (a cluster older than it) has none.
fn read_topic(
    kafka: &KafkaConfig,
    topic: &str,
    mut each: impl FnMut(OwnedMessage),
) -> anyhow::Result<()> {
    let topic = topic.to_owned();
    let consumer = reader(kafka, &kafka.group(TOOL_GROUP))?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> =
        metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut ends = std::collections::HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        let (low, high) = watermarks(&consumer, &topic, *partition, Duration::from_secs(10))?;
        if high > low {
            ends.insert(*partition, high);
            assignment.add_partition_offset(&topic, *partition, Offset::Offset(low))?;
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    let mut idle = 0;
    while !ends.is_empty() && idle < 50 {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                idle = 0;
                let (partition, offset) = (message.partition(), message.offset());
                each(message.detach());
                if ends.get(&partition).is_some_and(|end| offset + 1 >= *end) {
                    ends.remove(&partition);
                }
            }
            Some(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
            None => idle += 1,
        }
    }
    Ok(())
}

/// One dead letter by its position.
pub fn fetch(kafka: &KafkaConfig, partition: i32, offset: i64) -> anyhow::Result<DeadLetter> {
    let topics = kafka.topics();
    let consumer = reader(kafka, &kafka.group(TOOL_GROUP))?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topics.dlq(), partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    for _ in 0..50 {
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            let message = result?;
            anyhow::ensure!(message.offset() == offset, "no dead letter at {partition}:{offset}");
            return Ok(DeadLetter::from_record(message.detach(), &topics));
        }
    }
    anyhow::bail!("no dead letter at {partition}:{offset}")
}

fn time(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or_default());
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The table `herald dlq list` prints.
pub fn render_list(letters: &[DeadLetter]) -> String {
    let mut out = format!("{} dead letter(s)\n", letters.len());
    if letters.is_empty() {
        return out;
    }
    out.push_str("POSITION\tFAILED AT\tGROUP\tCLASS\tORIGIN\tNOTIFICATION\tREDRIVEN\tREASON\n");
    for l in letters {
        let reason: String = l.reason.chars().take(120).collect();
        let id = l.notification_id.as_deref().unwrap_or("-");
        let redriven = l.redriven_at.map_or_else(|| "-".to_owned(), time);
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{id}\t{redriven}\t{reason}\n",
            l.position(),
            time(l.failed_at),
            l.group,
            l.class,
            l.origin
        ));
    }
    out
}

/// What `herald dlq show` prints: headers, then the payload decoded when it can be.
pub async fn render_one(letter: &DeadLetter, codec: &AvroCodec) -> String {
    let mut out = format!("dead letter {}\n", letter.position());
    if let Some(key) = letter.record.key() {
        out.push_str(&format!("key: {}\n", String::from_utf8_lossy(key)));
    }
    if let Some(headers) = letter.record.headers() {
        for h in headers.iter() {
            let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
            out.push_str(&format!("{}: {value}\n", h.key));
        }
    }
    let payload = letter.record.payload();
    let decoded = match letter.channel {
        Some(_) => pretty::<ChannelMessage>(codec, payload).await,
        None if letter.origin.ends_with("requests") => {
            pretty::<NotificationRequest>(codec, payload).await
        }
        None => pretty::<DeliveryEvent>(codec, payload).await,
    };
    let body = decoded.unwrap_or_else(|e| {
        let raw = payload.map(String::from_utf8_lossy).unwrap_or_default();
        format!("(not decodable: {e})\n{raw}")
    });
    out.push('\n');
    out.push_str(&body);
    out.push('\n');
    out
}

async fn pretty<R: Record + serde::Serialize>(
    codec: &AvroCodec,
    payload: Option<&[u8]>,
) -> anyhow::Result<String> {
    let record: R = codec.decode(payload).await?;
    Ok(serde_json::to_string_pretty(&record)?)
}

/// Where a dead letter goes back to, and with which headers.
fn destination(letter: &DeadLetter, topics: &Topics) -> (String, OwnedHeaders) {
    const DROPPED: [&str; 7] = [
        headers::ATTEMPT,
        headers::DUE_AT,
        headers::ERROR_CLASS,
        headers::ERROR_REASON,
        headers::FAILED_GROUP,
        headers::FAILED_AT,
        headers::REDRIVEN_FROM,
    ];
    let position = letter.position();
    let mut out =
        headers_replacing(&letter.record, &DROPPED, &[(headers::REDRIVEN_FROM, &position)]);
    let channel = letter.channel.as_deref().and_then(|c| c.parse().ok());
    match channel {
        Some(channel) => {
            let now = herald_schemas::now_millis().to_string();
            out = out
                .insert(Header { key: headers::ATTEMPT, value: Some("1") })
                .insert(Header { key: headers::DUE_AT, value: Some(&now) });
            (topics.retry(channel, 1), out)
        }
        None => (letter.origin.clone(), out),
    }
}

/// What a redrive leaves alone.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LeftAlone {
    /// Undecodable records: they would be dead-lettered again at once.
    pub poison: usize,
    /// Dead letters redriven before.
    pub redriven: usize,
}

impl LeftAlone {
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.poison > 0 {
            out.push_str(&format!(
                "left {} poison record(s): they cannot be decoded, so retrying cannot help; fix their producer, then redrive them with --class poison\n",
                self.poison
            ));
        }
        if self.redriven > 0 {
            out.push_str(&format!(
                "left {} dead letter(s) redriven before (herald dlq list shows when); --again redrives them once more\n",
                self.redriven
            ));
        }
        out
    }
}

/// Which dead letters a redrive may put back besides the others.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedriveScope {
    /// Poison records (undecodable), which retrying cannot fix: only when asked by class.
    pub poison: bool,
    /// Dead letters redriven before (`--again`).
    pub again: bool,
}

/// The dead letters a redrive puts back, as `scope` allows; and what it leaves.
pub fn to_redrive(letters: Vec<DeadLetter>, scope: RedriveScope) -> (Vec<DeadLetter>, LeftAlone) {
    let mut left = LeftAlone::default();
    let letters = letters
        .into_iter()
        .filter(|l| {
            if l.class == Class::Poison.as_str() && !scope.poison {
                left.poison += 1;
                return false;
            }
            if l.redriven_at.is_some() && !scope.again {
                left.redriven += 1;
                return false;
            }
            true
        })
        .collect();
    (letters, left)
}

/// Puts `letters` back (see the module docs), at most `rate` records a second, and marks
/// each redriven; returns how many were produced. A dry run produces nothing.
pub async fn redrive(
    kafka: &KafkaConfig,
    letters: &[DeadLetter],
    rate: u32,
    mode: ChangeMode,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<usize> {
    let topics = kafka.topics();
    let producer = Producer::new(kafka, "herald-dlq-redrive")?;
    let marks = topics.dlq_redriven();
    let pause = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut sent = 0;
    for letter in letters {
        let (topic, headers) = destination(letter, &topics);
        anyhow::ensure!(
            !topic.is_empty(),
            "dead letter {} names no origin topic",
            letter.position()
        );
        if !mode.is_dry_run() {
            let payload = letter.record.payload().unwrap_or_default();
            producer.send(&topic, letter.record.key(), payload, Some(headers)).await?;
            let (position, now) = (letter.position(), herald_schemas::now_millis().to_string());
            producer.send(&marks, Some(position.as_bytes()), now.as_bytes(), None).await?;
            tokio::time::sleep(pause).await;
        }
        sent += 1;
        progress.inc(1);
    }
    Ok(sent)
}
