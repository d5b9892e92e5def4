//! What other roles learn about the directory reaches it as events on
//! `herald.directory.updates`: a device token a push provider reported dead (a `failed`
//! event marked `dead_target`) is deactivated, so the enricher stops targeting it. Roles
//! never share a database.

use std::sync::Arc;

use herald_runtime::kafka::{DeadLetters, Handler, HandlerError, OwnedMessage};
use herald_schemas::{AvroCodec, DeliveryEvent, EventKind};

use crate::directory::{Directory, Platform};

pub(crate) struct DirectoryUpdates<D> {
    directory: Arc<D>,
    codec: Arc<AvroCodec>,
    dead_letters: DeadLetters,
}

impl<D: Directory> DirectoryUpdates<D> {
    pub(crate) fn new(directory: Arc<D>, codec: Arc<AvroCodec>, dead_letters: DeadLetters) -> Self {
        Self { directory, codec, dead_letters }
    }
}

/// The device token an event reports dead, if it does.
fn dead_token(event: &DeliveryEvent) -> Option<(Platform, &str)> {
    if event.kind != EventKind::Failed
        || event.detail.get("dead_target").map(String::as_str) != Some("true")
    {
        return None;
    }
    let platform = event.channel.as_deref()?.parse::<Platform>().ok()?;
    Some((platform, event.target.as_deref()?))
}

impl<D: Directory> Handler for DirectoryUpdates<D> {
    async fn handle(&self, record: &OwnedMessage) -> Result<(), HandlerError> {
        let decoded =
            self.dead_letters.decode_or_dead_letter::<DeliveryEvent>(&self.codec, record).await?;
        let Some(event) = decoded else { return Ok(()) };
        let Some((platform, token)) = dead_token(&event) else { return Ok(()) };
        let deactivated =
            self.directory.deactivate_token(platform, token).await.map_err(HandlerError::new)?;
        tracing::info!(%platform, deactivated, notification_id = %event.notification_id, "dead device token deactivated");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failed_events_marked_dead_on_push_channels_count() {
        let mut event = DeliveryEvent::new("n", EventKind::Failed);
        event.channel = Some("ios".into());
        event.target = Some("tok".into());
        assert_eq!(dead_token(&event), None, "not marked dead");
        event.detail.insert("dead_target".into(), "true".into());
        assert_eq!(dead_token(&event), Some((Platform::Ios, "tok")));
        event.channel = Some("email".into());
        assert_eq!(dead_token(&event), None, "email addresses are not devices");
        event.channel = Some("android".into());
        event.kind = EventKind::Sent;
        assert_eq!(dead_token(&event), None);
    }
}
