//! `herald produce`: JSON lines of `NotificationRequest` (the Avro record's fields as JSON)
//! produced to `herald.requests` in the Confluent wire format, as a service producing Avro
//! directly would. `notification_id`, `accepted_at`, `channels`, `category` and `metadata`
//! may be left out; a line that is not a valid request (a field the record does not have
//! included, as the send API refuses one) is reported with its number and skipped.

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
    /// Line number (from 1) and the notification id produced from it.
    pub produced: Vec<(usize, String)>,
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
    let request: NotificationRequest = serde_json::from_value(value.clone())
        .map_err(|e| format!("not a NotificationRequest: {e}"))?;
    // The record's serde form drops unknown fields (a newer schema's records must still
    // read); a line is a caller's, and a misspelt field is refused as the send API does.
    let known = serde_json::to_value(&request).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    unknown_fields(&value, &known, "", &mut unknown);
    if !unknown.is_empty() {
        return Err(format!("unknown field(s): {}", unknown.join(", ")));
    }
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

/// The paths of `line`'s object keys that `known` (the same request as the record has it)
/// lacks.
fn unknown_fields(line: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (line, known) {
        (Value::Object(fields), Value::Object(known)) => {
            for (name, value) in fields {
                let at = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                match known.get(name) {
                    Some(known) => unknown_fields(value, known, &at, out),
                    None => out.push(at),
                }
            }
        }
        (Value::Array(items), Value::Array(known)) => {
            for (index, (item, known)) in items.iter().zip(known).enumerate() {
                unknown_fields(item, known, &format!("{path}[{index}]"), out);
            }
        }
        _ => {}
    }
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
        report.produced.push((index + 1, request.notification_id));
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

    #[test]
    fn a_misspelt_field_is_refused_naming_it_and_free_maps_keep_any_key() {
        let line = r#"{"recipient": {"email": "a@example.com", "nmae": "x"}, "priorty": "high",
            "email": {"subject": "s", "text": "t"}, "metadata": {"anything": "goes"}}"#;
        let error = parse_line(line, 0).unwrap_err();
        assert!(error.contains("unknown field(s): priorty, recipient.nmae"), "{error}");
        let fine = r#"{"recipient": {"email": "a@example.com"}, "priority": "high",
            "push": {"body": "b", "data": {"deep_link": "x"}}, "metadata": {"k": "v"}}"#;
        assert!(parse_line(fine, 0).is_ok(), "{:?}", parse_line(fine, 0));
    }
}
