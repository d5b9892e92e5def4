//! One request record in, its channel messages and events out.

use std::sync::Arc;

use herald_runtime::kafka::{
    AvroProducer, DeadLetters, Handler, HandlerError, Header, OwnedHeaders, OwnedMessage, wait_all,
};
use herald_schemas::{NotificationRequest, Topics, headers};

use crate::config::Rules;
use crate::directory::{self, Directory};
use crate::fanout;

pub(crate) struct EnrichHandler<D> {
    directory: Arc<D>,
    output: AvroProducer,
    dead_letters: DeadLetters,
    topics: Topics,
    rules: Rules,
}

impl<D: Directory> EnrichHandler<D> {
    pub(crate) fn new(
        directory: Arc<D>,
        output: AvroProducer,
        dead_letters: DeadLetters,
        (topics, rules): (Topics, Rules),
    ) -> Self {
        Self { directory, output, dead_letters, topics, rules }
    }

    async fn enrich(&self, request: NotificationRequest) -> Result<(), HandlerError> {
        let profile = match request.recipient.user_id.as_deref() {
            Some(user_id) => {
                directory::profile(&*self.directory, user_id).await.map_err(HandlerError::new)?
            }
            None => None,
        };
        let plan = fanout::plan(&request, profile.as_ref(), &self.rules);
        let mut acks = Vec::with_capacity(plan.messages.len() + plan.events.len());
        for (channel, message) in &plan.messages {
            let headers = OwnedHeaders::new().insert(Header {
                key: headers::NOTIFICATION_ID,
                value: Some(message.notification_id.as_str()),
            });
            let topic = self.topics.channel(*channel);
            acks.push(
                self.output
                    .enqueue(&topic, &message.target, message, Some(headers))
                    .await
                    .map_err(HandlerError::new)?,
            );
        }
        let events_topic = self.topics.events();
        for event in &plan.events {
            acks.push(
                self.output
                    .enqueue(&events_topic, &event.notification_id, event, None)
                    .await
                    .map_err(HandlerError::new)?,
            );
        }
        wait_all(acks).await.map_err(HandlerError::new)
    }
}

impl<D: Directory> Handler for EnrichHandler<D> {
    async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError> {
        let codec = self.output.codec();
        match self.dead_letters.decode_or_dead_letter::<NotificationRequest>(codec, message).await?
        {
            Some(request) => self.enrich(request).await,
            None => Ok(()),
        }
    }
}
