//! Sandbox providers: record what would have been sent instead of sending it. `herald dev`
//! shows them (in memory); configured with `record_to`, they append JSON lines to a file.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use herald_schemas::ChannelMessage;
use serde::Serialize;

use crate::providers::{DeliveryError, Provider, SendFuture, Sent};

mod config;

pub use config::SandboxSettings;

/// One message a sandbox provider took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    pub at: i64,
    pub provider: String,
    pub channel: String,
    pub target: String,
    pub notification_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub text: String,
}

/// The latest recorded messages, shared with whoever shows them.
#[derive(Debug, Clone, Default)]
pub struct Recordings {
    inner: Arc<Mutex<VecDeque<Recorded>>>,
}

/// A long-running `herald dev` keeps this many.
const KEPT: usize = 500;

impl Recordings {
    pub fn latest(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    fn push(&self, recorded: Recorded) {
        let mut kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(recorded);
    }
}

#[derive(Debug)]
enum Sink {
    Memory(Recordings),
    File(Mutex<std::fs::File>),
}

#[derive(Debug)]
pub struct SandboxProvider {
    name: String,
    sink: Sink,
}

impl SandboxProvider {
    pub fn in_memory(name: &str, recordings: Recordings) -> Self {
        Self { name: name.to_owned(), sink: Sink::Memory(recordings) }
    }

    pub fn to_file(name: &str, path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { name: name.to_owned(), sink: Sink::File(Mutex::new(file)) })
    }
}

impl Provider for SandboxProvider {
    fn send<'a>(&'a self, message: &'a ChannelMessage) -> SendFuture<'a> {
        Box::pin(async move {
            let (title, text) = match (&message.push, &message.sms, &message.email) {
                (Some(push), _, _) => (push.title.clone(), push.body.clone()),
                (_, Some(sms), _) => (None, sms.text.clone()),
                (_, _, Some(email)) => (
                    Some(email.subject.clone()),
                    email.text.clone().or(email.html.clone()).unwrap_or_default(),
                ),
                _ => {
                    return Err(DeliveryError::Invalid {
                        reason: "channel message has no content".into(),
                    });
                }
            };
            let recorded = Recorded {
                at: herald_schemas::now_millis(),
                provider: self.name.clone(),
                channel: message.channel.clone(),
                target: message.target.clone(),
                notification_id: message.notification_id.clone(),
                title,
                text,
            };
            match &self.sink {
                Sink::Memory(recordings) => recordings.push(recorded),
                Sink::File(file) => {
                    let line = serde_json::to_string(&recorded).unwrap_or_default();
                    let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
                    writeln!(file, "{line}").map_err(|e| DeliveryError::Transient {
                        reason: format!("sandbox cannot record: {e}"),
                        retry_after: None,
                    })?;
                }
            }
            Ok(Sent { provider_message_id: None })
        })
    }
}
