//! Provider delivery reports with any timestamp, body, parameters and signature: Twilio's
//! and SendGrid's checks refuse what was not signed, never panic.
#![no_main]

use std::sync::OnceLock;

use herald_ingest::callbacks::{SendgridVerifier, TwilioVerifier};
use herald_ingest::config::TwilioCallbacks;
use herald_runtime::SecretSource;
use libfuzzer_sys::fuzz_target;

/// A P-256 public key made for this target (SendGrid shows one like it).
const SENDGRID_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzasUkKUQr7nAuEGtkCe8KsJ1W12ZM7/RNIMiL0puhtZfFJAyl9XIjMw+jKfPOsbJOs6k+GwgOR0Og8MiZ3OKuw==";

fn verifiers() -> &'static (TwilioVerifier, SendgridVerifier) {
    static VERIFIERS: OnceLock<(TwilioVerifier, SendgridVerifier)> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let token = std::env::temp_dir().join("herald-fuzz-twilio-token");
        std::fs::write(&token, "twilio auth token").expect("a token file");
        let twilio = TwilioVerifier::new(&TwilioCallbacks {
            url: "https://herald.example/v1/callbacks/twilio".into(),
            auth_token: SecretSource::File(token.display().to_string()),
        })
        .expect("the token");
        (twilio, SendgridVerifier::new(SENDGRID_KEY).expect("the key"))
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (first, second, third, rest) =
        (parts.next(), parts.next(), parts.next(), parts.next().unwrap_or_default());
    let (first, second, third) =
        (first.unwrap_or_default(), second.unwrap_or_default(), third.unwrap_or_default());
    let (twilio, sendgrid) = verifiers();
    let _ = sendgrid.verify(first, rest.as_bytes(), second);
    let params: Vec<(String, String)> = rest
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let query = (!first.is_empty()).then_some(first);
    let _ = twilio.verify(query, &params, third);
    // What Twilio would sign verifies; nothing else is asserted to (a forgery is a miss).
    assert!(twilio.verify(query, &params, &twilio.sign(query, &params)));
});
