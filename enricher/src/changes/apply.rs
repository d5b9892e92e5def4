//! The applier: the one writer of the directory. A consumer group on the directory topics
//! (`herald.directory.changes`, `herald.templates`, and the dead tokens of
//! `herald.directory.updates`) that applies each record to the store in its key's order,
//! dead-letters what cannot be applied with the reason, and tells how far each partition is
//! applied (see [`crate::freshness`]).

use std::sync::Arc;

use herald_runtime::kafka::{
    DeadLetters, ErrorClass, Handler, HandlerError, Message, OwnedMessage, wait_all,
};
use herald_schemas::{
    AvroCodec, DeliveryEvent, DeviceFields, DirectoryChange, DirectoryOp, EventKind, Topics,
};

use super::writer::DirectoryWriter;
use super::{check, describe, device_of, preferences_of, templates, user_after};
use crate::cache::CachedDirectory;
use crate::directory::{Directory, Platform};
use crate::templates::Renderer;

/// Where the applier says how far it got.
pub trait Progress: Send + Sync + 'static {
    fn applied(&self, topic: &str, partition: i32, next: i64);
}

pub struct Applier<D, P> {
    directory: Arc<CachedDirectory<D>>,
    writer: DirectoryWriter,
    codec: Arc<AvroCodec>,
    dead_letters: DeadLetters,
    topics: Topics,
    renderer: Renderer,
    progress: P,
}

impl<D, P> std::fmt::Debug for Applier<D, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier").field("topics", &self.topics).finish_non_exhaustive()
    }
}

/// Why a record is not applied: it goes to the dead-letter topic with this reason.
struct Refused(String);

impl<D: Directory, P: Progress> Applier<D, P> {
    pub fn new(
        directory: Arc<CachedDirectory<D>>,
        writer: DirectoryWriter,
        codec: Arc<AvroCodec>,
        dead_letters: DeadLetters,
        progress: P,
    ) -> Self {
        let topics = writer.topics().clone();
        Self {
            directory,
            writer,
            codec,
            dead_letters,
            topics,
            renderer: Renderer::default(),
            progress,
        }
    }

    /// The store itself: the applier reads what it is about to change, never a cache.
    fn store(&self) -> &D {
        self.directory.inner()
    }

    async fn change(&self, record: &OwnedMessage) -> Result<Result<(), Refused>, HandlerError> {
        let Some(user_id) = record.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            return Ok(Err(Refused("a directory change is keyed by its user id (UTF-8)".into())));
        };
        if record.payload().is_none_or(<[u8]>::is_empty) {
            self.directory.delete_user(user_id).await.map_err(HandlerError::new)?;
            return Ok(Ok(()));
        }
        let decoded =
            self.dead_letters.decode_or_dead_letter::<DirectoryChange>(&self.codec, record);
        let Some(change) = decoded.await? else { return Ok(Ok(())) };
        if change.user_id != user_id {
            let reason =
                format!("the change is about user {:?} but keyed {user_id:?}", change.user_id);
            return Ok(Err(Refused(reason)));
        }
        let errors = check(&change);
        if !errors.is_empty() {
            return Ok(Err(Refused(describe(&errors))));
        }
        self.apply(&change).await
    }

    async fn apply(&self, change: &DirectoryChange) -> Result<Result<(), Refused>, HandlerError> {
        let id = change.user_id.as_str();
        let store = |e: crate::directory::DirectoryError| HandlerError::new(e);
        let known = async || self.store().user(id).await.map_err(store);
        let unknown = || {
            Ok(Err(Refused(format!(
                "unknown_user: user {id:?} is not in the directory ({})",
                change.op.as_str()
            ))))
        };
        match change.op {
            DirectoryOp::PutUser | DirectoryOp::PatchUser => {
                let Some(fields) = &change.user else { return unknown() };
                let current = if change.op == DirectoryOp::PatchUser {
                    match known().await? {
                        Some(user) => Some(user),
                        None => return unknown(),
                    }
                } else {
                    None
                };
                self.directory.upsert_user(user_after(id, fields, current)).await.map_err(store)?;
            }
            DirectoryOp::DeleteUser => {
                self.directory.delete_user(id).await.map_err(store)?;
            }
            DirectoryOp::PutDevice => {
                let Some(device) = change.device.as_ref().and_then(device_of) else {
                    return unknown();
                };
                let (platform, token) = (device.platform, device.token.clone());
                // A device may come before its user (two tables of a service's database
                // streamed apart): the user is created empty.
                let moved = self.directory.register_device(id, device).await.map_err(store)?;
                self.move_token_away(&moved, platform, &token).await?;
            }
            DirectoryOp::RemoveDevice => {
                let Some(fields) = &change.device else { return unknown() };
                let Some(device_id) = fields.device_id.as_deref() else { return unknown() };
                if let Some(token) = &fields.token {
                    // Removed because its token moved: only while it still carries it.
                    let devices = self.store().devices(id).await.map_err(store)?;
                    if !devices.iter().any(|d| d.device_id == device_id && &d.token == token) {
                        return Ok(Ok(()));
                    }
                }
                self.directory.remove_device(id, device_id).await.map_err(store)?;
            }
            DirectoryOp::SetPreferences => {
                self.directory.ensure_user(id).await.map_err(store)?;
                for preference in preferences_of(change) {
                    self.directory.set_preference(id, preference).await.map_err(store)?;
                }
            }
            DirectoryOp::DeactivateToken => {
                let Some(fields) = &change.device else { return unknown() };
                let (Some(platform), Some(token)) =
                    (fields.platform.as_deref(), fields.token.as_deref())
                else {
                    return unknown();
                };
                for mut device in self.store().devices(id).await.map_err(store)? {
                    if device.platform.as_str() == platform
                        && device.token == token
                        && device.active
                    {
                        device.active = false;
                        self.directory.upsert_device(id, device).await.map_err(store)?;
                    }
                }
            }
            DirectoryOp::Unknown => return Ok(Err(Refused("unknown operation".into()))),
        }
        Ok(Ok(()))
    }

    /// A token registered for one device leaves the devices that carried it before, at once
    /// (a read of their users after the answer no longer finds it), and by a change of each
    /// user of theirs too: every enricher drops that user's devices from its cache as it is
    /// applied, and a send to them waits for it. Applying that change again finds nothing
    /// to remove.
    async fn move_token_away(
        &self,
        moved: &[(String, String)],
        platform: Platform,
        token: &str,
    ) -> Result<(), HandlerError> {
        let mut acks = Vec::with_capacity(moved.len());
        for (owner, device_id) in moved {
            self.directory.remove_device(owner, device_id).await.map_err(HandlerError::new)?;
            let mut change = DirectoryChange::new(owner, DirectoryOp::RemoveDevice);
            change.device = Some(DeviceFields {
                device_id: Some(device_id.clone()),
                platform: Some(platform.as_str().to_owned()),
                token: Some(token.to_owned()),
                ..DeviceFields::default()
            });
            acks.push(self.writer.change(&change).await.map_err(HandlerError::new)?);
        }
        wait_all(acks).await.map_err(HandlerError::new)
    }

    async fn template(&self, record: &OwnedMessage) -> Result<Result<(), Refused>, HandlerError> {
        let Some(id) = record.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            return Ok(Err(Refused(
                "a template record is keyed by its template id (UTF-8)".into(),
            )));
        };
        let store = |e: crate::directory::DirectoryError| HandlerError::new(e);
        let Some(value) = record.payload().filter(|v| !v.is_empty()) else {
            self.directory.delete_template(id).await.map_err(store)?;
            return Ok(Ok(()));
        };
        let variants = match templates::parse(id, value) {
            Ok(Some(variants)) => variants,
            // An id announced before templates travelled whole: nothing to apply.
            Ok(None) => return Ok(Ok(())),
            Err(reason) => return Ok(Err(Refused(reason))),
        };
        let errors = templates::check(id, &variants, &self.renderer);
        if !errors.is_empty() {
            return Ok(Err(Refused(describe(&errors))));
        }
        self.directory.put_template(id, variants).await.map_err(store)?;
        Ok(Ok(()))
    }

    /// A dead device token reported by a dispatcher: a `deactivate_token` change for each
    /// user carrying it, so that it is applied in each user's order like any other change.
    async fn dead_token(&self, record: &OwnedMessage) -> Result<(), HandlerError> {
        let decoded = self.dead_letters.decode_or_dead_letter::<DeliveryEvent>(&self.codec, record);
        let Some(event) = decoded.await? else { return Ok(()) };
        let Some((platform, token)) = dead_token(&event) else { return Ok(()) };
        let owners: Vec<String> = match &event.user_id {
            Some(user_id) => vec![user_id.clone()],
            None => {
                let owners =
                    self.store().token_owners(platform, token).await.map_err(HandlerError::new)?;
                owners.into_iter().map(|(owner, _)| owner).collect()
            }
        };
        let mut acks = Vec::with_capacity(owners.len());
        for owner in &owners {
            let mut change = DirectoryChange::new(owner, DirectoryOp::DeactivateToken);
            change.device = Some(DeviceFields {
                platform: Some(platform.as_str().to_owned()),
                token: Some(token.to_owned()),
                ..DeviceFields::default()
            });
            acks.push(self.writer.change(&change).await.map_err(HandlerError::new)?);
        }
        wait_all(acks).await.map_err(HandlerError::new)?;
        tracing::info!(%platform, users = owners.len(), notification_id = %event.notification_id, "dead device token: deactivating");
        Ok(())
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

impl<D: Directory, P: Progress> Handler for Applier<D, P> {
    async fn handle(&self, record: &OwnedMessage) -> Result<(), HandlerError> {
        let topic = record.topic();
        let outcome = if topic == self.topics.directory_changes() {
            self.change(record).await?
        } else if topic == self.topics.templates() {
            self.template(record).await?
        } else if topic == self.topics.directory_updates() {
            return self.dead_token(record).await;
        } else {
            return Ok(());
        };
        if let Err(Refused(reason)) = outcome {
            self.dead_letters
                .send(record, ErrorClass::Poison, &reason)
                .await
                .map_err(HandlerError::new)?;
        }
        Ok(())
    }

    fn finished_before(&self, topic: &str, partition: i32, next_offset: i64) {
        self.progress.applied(topic, partition, next_offset);
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
