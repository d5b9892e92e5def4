//! `herald produce`: JSON lines of `NotificationRequest` (the Avro record's fields as JSON)
//! produced to `herald.requests` in the Confluent wire format, as a service producing Avro
//! directly would. `notification_id`, `accepted_at`, `channels`, `category` and `metadata`
//! may be left out; a line that is not a valid request is reported with its number and
//! skipped.

use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use herald_runtime::kafka::{Header, OwnedHeaders, wait_all};
use herald_schemas::{NotificationRequest, headers};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::HeraldConfig;
use crate::roles;

/// Records produced before waiting for the broker's acknowledgements.
const ACK_BATCH: usize = 1_000;

#[derive(Debug, Default, Serialize)]
pub struct ProduceReport {
    pub produced: usize,
    /// Line number (from 1) and why it was skipped.
    pub refused: Vec<(usize, String)>,
}

/// The request on one line, with the omitted fields filled in.
pub fn parse_line(line: &str, now: i64) -> Result<NotificationRequest, String> {
    let mut value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Some(fields) = value.as_object_mut() else {
        return Err("not a JSON object".into());
    };
    let defaults = [
        ("notification_id", json!(uuid::Uuid::now_v7().to_string())),
        ("accepted_at", json!(now)),
        ("channels", json!([])),
        ("category", json!("transactional")),
        ("metadata", json!({})),
        ("client_id", Value::Null),
    ];
    for (name, default) in defaults {
        fields.entry(name).or_insert(default);
    }
    let request: NotificationRequest =
        serde_json::from_value(value).map_err(|e| format!("not a NotificationRequest: {e}"))?;
    let recipient = &request.recipient;
    if recipient.user_id.is_none()
        && recipient.email.is_none()
        && recipient.phone.is_none()
        && recipient.device.is_none()
    {
        return Err("recipient needs a user_id, email, phone or device".into());
    }
    if request.email.is_none()
        && request.sms.is_none()
        && request.push.is_none()
        && request.template.is_none()
    {
        return Err("no content: email, sms, push or a template".into());
    }
    Ok(request)
}

pub async fn run(
    config: &HeraldConfig,
    file: &Path,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<ProduceReport> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let output = roles::output(config, "herald-produce")?;
    let topics = config.kafka.topics();
    let mut report = ProduceReport::default();
    let mut acks = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", index + 1))?;
        progress.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let request = match parse_line(&line, herald_schemas::now_millis()) {
            Ok(request) => request,
            Err(reason) => {
                report.refused.push((index + 1, reason));
                continue;
            }
        };
        let id =
            Header { key: headers::NOTIFICATION_ID, value: Some(request.notification_id.as_str()) };
        let ack = output
            .enqueue(
                &topics.requests_in(request.lane()),
                request.partition_key(),
                &request,
                Some(OwnedHeaders::new().insert(id)),
            )
            .await
            .with_context(|| format!("producing line {}", index + 1))?;
        acks.push(ack);
        report.produced += 1;
        if acks.len() >= ACK_BATCH {
            wait_all(std::mem::take(&mut acks)).await.context("the broker's acknowledgement")?;
        }
    }
    wait_all(acks).await.context("the broker's acknowledgement")?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_fields_are_filled_and_bad_lines_say_why() {
        let line =
            r#"{"recipient": {"email": "a@example.com"}, "email": {"subject": "s", "text": "t"}}"#;
        let request = parse_line(line, 7).unwrap();
        assert_eq!(request.accepted_at, 7);
        assert_eq!(request.category, "transactional");
        assert!(!request.notification_id.is_empty());
        assert!(parse_line("[1]", 0).unwrap_err().contains("object"));
        assert!(parse_line("{", 0).unwrap_err().contains("JSON"));
        let nobody = r#"{"recipient": {}, "sms": {"text": "t"}}"#;
        assert!(parse_line(nobody, 0).unwrap_err().contains("recipient"));
        let empty = r#"{"recipient": {"phone": "+14155550100"}}"#;
        assert!(parse_line(empty, 0).unwrap_err().contains("content"));
    }
}
