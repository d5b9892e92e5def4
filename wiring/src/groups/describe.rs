//! What `herald groups` prints: a group's lag per partition, the moves of a reset, and a
//! group's members as its coordinator describes them.

use std::time::Duration;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::ChangeMode;
use herald_runtime::kafka::group_offsets::{PartitionLag, Reset, probe};
use rdkafka::consumer::Consumer;

pub fn render(rows: &[PartitionLag]) -> String {
    let total: i64 = rows.iter().map(PartitionLag::lag).sum();
    let mut out =
        format!("total lag {total}\nTOPIC\tPARTITION\tCOMMITTED\tLOG START\tLOG END\tLAG\n");
    for r in rows {
        let committed = r.committed.map_or_else(|| "-".to_owned(), |c| c.to_string());
        out.push_str(&format!(
            "{}\t{}\t{committed}\t{}\t{}\t{}\n",
            r.topic,
            r.partition,
            r.low,
            r.high,
            r.lag()
        ));
    }
    out
}

pub fn render_resets(resets: &[Reset], mode: ChangeMode) -> String {
    let verb = if mode.is_dry_run() { "would move" } else { "moved" };
    let mut out = format!("{verb} {} partition(s)\nTOPIC\tPARTITION\tFROM\tTO\n", resets.len());
    for r in resets {
        let from = r.from.map_or_else(|| "-".to_owned(), |o| o.to_string());
        out.push_str(&format!("{}\t{}\t{from}\t{}\n", r.topic, r.partition, r.to));
    }
    out
}

/// A consumer group as its coordinator sees it: state and members with their partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub client_id: String,
    pub host: String,
    /// Partitions per topic; `None` when the assignment could not be read.
    pub assignment: Option<Vec<(String, Vec<i32>)>>,
}

/// Asks the group's coordinator (DescribeGroups) who the members of `group` are.
pub fn describe(kafka: &KafkaConfig, group: &str) -> anyhow::Result<GroupDescription> {
    let consumer = probe(kafka)?;
    let list = consumer.fetch_group_list(Some(group), Duration::from_secs(10)).map_err(|e| {
        anyhow::anyhow!(
            "the broker did not describe group {group}: {e} (brokers without ListGroups/DescribeGroups, such as Tansu 0.6, cannot; `herald groups lag` still shows where the group stands)"
        )
    })?;
    let info = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .ok_or_else(|| anyhow::anyhow!("the broker knows no group {group}"))?;
    let members = info
        .members()
        .iter()
        .map(|m| GroupMember {
            client_id: m.client_id().to_owned(),
            host: m.client_host().to_owned(),
            assignment: m.assignment().and_then(decode_assignment),
        })
        .collect();
    Ok(GroupDescription {
        group: group.to_owned(),
        state: info.state().to_owned(),
        protocol: info.protocol().to_owned(),
        members,
    })
}

pub fn render_description(description: &GroupDescription) -> String {
    let mut out = format!(
        "group {}: {} ({}), {} member(s)\n",
        description.group,
        description.state,
        if description.protocol.is_empty() { "no protocol" } else { &description.protocol },
        description.members.len()
    );
    if description.members.is_empty() && description.state == "Dead" {
        out.push_str(
            "  the broker knows no classic group by this name: a group of the consumer protocol \
             (kafka.consumer.group_protocol = \"consumer\") is invisible to DescribeGroups; \
             `herald groups lag` shows where it stands, and Kafka's kafka-consumer-groups.sh \
             --describe --members lists its members\n",
        );
    }
    for member in &description.members {
        let assigned = match &member.assignment {
            Some(topics) if topics.is_empty() => "no partitions".to_owned(),
            Some(topics) => topics
                .iter()
                .map(|(topic, partitions)| {
                    let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
                    format!("{topic}[{}]", list.join(","))
                })
                .collect::<Vec<_>>()
                .join(" "),
            None => "assignment unreadable".to_owned(),
        };
        out.push_str(&format!("  {} at {}: {assigned}\n", member.client_id, member.host));
    }
    out
}

/// The consumer protocol's assignment (version, then topics with their partitions), as the
/// coordinator hands it out; `None` if the bytes are not one.
fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (head, rest) = self.0.split_first_chunk::<N>()?;
            self.0 = rest;
            Some(*head)
        }
        fn i16(&mut self) -> Option<i16> {
            self.take::<2>().map(i16::from_be_bytes)
        }
        fn i32(&mut self) -> Option<i32> {
            self.take::<4>().map(i32::from_be_bytes)
        }
        fn string(&mut self) -> Option<String> {
            let len = usize::try_from(self.i16()?).ok()?;
            let text = self.0.get(..len)?;
            self.0 = &self.0[len..];
            String::from_utf8(text.to_vec()).ok()
        }
    }
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut reader = Reader(bytes);
    let _version = reader.i16()?;
    let topics = usize::try_from(reader.i32()?).ok()?;
    let mut out = Vec::new();
    for _ in 0..topics.min(bytes.len()) {
        let topic = reader.string()?;
        let count = usize::try_from(reader.i32()?).ok()?;
        let partitions =
            (0..count.min(bytes.len())).map(|_| reader.i32()).collect::<Option<Vec<_>>>()?;
        out.push((topic, partitions));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut bytes = 0i16.to_be_bytes().to_vec();
        bytes.extend((topics.len() as i32).to_be_bytes());
        for (topic, partitions) in topics {
            bytes.extend((topic.len() as i16).to_be_bytes());
            bytes.extend(topic.as_bytes());
            bytes.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                bytes.extend(p.to_be_bytes());
            }
        }
        bytes.extend((-1i32).to_be_bytes()); // no user data
        bytes
    }

    #[test]
    fn an_assignment_is_read_and_a_truncated_one_is_refused() {
        let bytes =
            assignment(&[("herald.channel.email", &[0, 2]), ("herald.retry.email.1", &[1])]);
        assert_eq!(
            decode_assignment(&bytes),
            Some(vec![
                ("herald.channel.email".to_owned(), vec![0, 2]),
                ("herald.retry.email.1".to_owned(), vec![1])
            ])
        );
        assert_eq!(
            decode_assignment(&bytes[..bytes.len() - 9]),
            None,
            "cut inside a partition list"
        );
        assert_eq!(
            decode_assignment(&[0, 0, 0x7f, 0xff, 0xff, 0xff]),
            None,
            "a count past the end"
        );
        assert_eq!(decode_assignment(&[]), Some(Vec::new()), "a member with nothing assigned");
    }
}
