//! Whole record values as a topic holds them (magic byte, any schema id, any body), through
//! the codec and a registry that knows Herald's schemas: an error, never a panic or a hang.
#![no_main]

use std::sync::OnceLock;

use herald_testkit::DevRegistry;
use herald_schemas::{
    AvroCodec, ChannelMessage, DeliveryEvent, NotificationRequest, RegistryConfig,
};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    codec: AvroCodec,
}

/// A development registry on a loopback port, with Herald's three schemas registered.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let codec = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
            let url = format!("http://{}", listener.local_addr().expect("its address"));
            tokio::spawn(DevRegistry::default().serve(listener, std::future::pending()));
            let codec = AvroCodec::new(&RegistryConfig::new(url)).expect("a codec");
            let request = NotificationRequest::default();
            codec.encode("herald.requests", &request).await.expect("registered");
            codec
                .encode("herald.channel.email", &ChannelMessage::default())
                .await
                .expect("registered");
            codec
                .encode(
                    "herald.events",
                    &DeliveryEvent::new("n", herald_schemas::EventKind::Accepted),
                )
                .await
                .expect("registered");
            codec
        });
        Fixture { runtime, codec }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, payload)) = data.split_first() else { return };
    let Fixture { runtime, codec } = fixture();
    runtime.block_on(async {
        match which % 3 {
            0 => drop(codec.decode::<NotificationRequest>(Some(payload)).await),
            1 => drop(codec.decode::<ChannelMessage>(Some(payload)).await),
            _ => drop(codec.decode::<DeliveryEvent>(Some(payload)).await),
        }
    });
});
