//! Any bytes after the Confluent frame, read as each of Herald's records (the codec's path
//! for a schema id it knows): an error, never a panic or a hang.
#![no_main]

use herald_schemas::codec::decode_body;
use herald_schemas::{ChannelMessage, DeliveryEvent, NotificationRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    match which % 3 {
        0 => drop(decode_body::<NotificationRequest>(body)),
        1 => drop(decode_body::<ChannelMessage>(body)),
        _ => drop(decode_body::<DeliveryEvent>(body)),
    }
});
