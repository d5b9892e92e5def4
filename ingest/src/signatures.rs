//! The signatures providers put on the delivery reports they post back: Twilio's HMAC-SHA1
//! over the URL and parameters, SendGrid's ECDSA P-256 over the timestamp and body. Checked
//! before a report is read (`crate::callbacks`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_runtime::config::SecretError;
use ring::hmac;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};

use crate::config::TwilioCallbacks;

/// Checks Twilio's request signatures.
#[derive(Debug, Clone)]
pub struct TwilioVerifier {
    /// The callback URL without its query: the query is the one each request arrives with.
    base_url: String,
    key: hmac::Key,
}

impl TwilioVerifier {
    pub fn new(config: &TwilioCallbacks) -> Result<Self, SecretError> {
        let base_url = config.url.split('?').next().unwrap_or_default().to_owned();
        let token = config.auth_token.read()?;
        Ok(Self {
            base_url,
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes()),
        })
    }

    /// Twilio's scheme: base64 of HMAC-SHA1 under the auth token over the full URL followed by
    /// each POST parameter's name and value, sorted by name.
    fn expected(&self, query: Option<&str>, params: &[(String, String)]) -> hmac::Tag {
        let mut signed = self.base_url.clone();
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            signed.push('?');
            signed.push_str(query);
        }
        let mut sorted: Vec<&(String, String)> = params.iter().collect();
        sorted.sort();
        for (name, value) in sorted {
            signed.push_str(name);
            signed.push_str(value);
        }
        hmac::sign(&self.key, signed.as_bytes())
    }

    pub fn verify(
        &self,
        query: Option<&str>,
        params: &[(String, String)],
        signature: &str,
    ) -> bool {
        let Ok(given) = STANDARD.decode(signature.trim()) else { return false };
        let expected = self.expected(query, params);
        // Equal length first, then a comparison that does not stop at the first difference.
        given.len() == expected.as_ref().len()
            && given.iter().zip(expected.as_ref()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// The signature Twilio would send (for tests and local stand-ins).
    pub fn sign(&self, query: Option<&str>, params: &[(String, String)]) -> String {
        STANDARD.encode(self.expected(query, params).as_ref())
    }
}

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1), before the
/// 65-byte uncompressed point.
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[derive(Debug, Clone)]
pub struct SendgridVerifier {
    /// The uncompressed point of the verification key.
    point: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "ingest.callbacks.sendgrid.verification_key is not a base64 P-256 public key (the key SendGrid shows for signed event webhooks)"
)]
pub struct KeyError;

impl SendgridVerifier {
    /// From the verification key as SendGrid shows it.
    pub fn new(verification_key: &str) -> Result<Self, KeyError> {
        let der = STANDARD.decode(verification_key.trim()).map_err(|_| KeyError)?;
        let point = der.strip_prefix(&P256_SPKI_PREFIX[..]).ok_or(KeyError)?;
        if point.len() != 65 || point.first() != Some(&0x04) {
            return Err(KeyError);
        }
        Ok(Self { point: point.to_vec() })
    }

    pub fn verify(&self, timestamp: &str, body: &[u8], signature: &str) -> bool {
        let Ok(signature) = STANDARD.decode(signature.trim()) else { return false };
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(&signed, &signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};

    use super::*;

    fn verifier() -> TwilioVerifier {
        TwilioVerifier {
            base_url: "https://mycompany.com/myapp.php".into(),
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"12345"),
        }
    }

    #[test]
    fn twilios_documented_example_signature_verifies() {
        // The example of Twilio's signature validation snippets (TwilioDevEd/api-snippets).
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let query = Some("foo=1&bar=2");
        assert_eq!(verifier().sign(query, &params), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
        assert!(verifier().verify(query, &params, "GvWf1cFY/Q7PnoempGyD5oXAezc="));
        let mut changed = params.clone();
        changed[2].1 = "9999".into();
        assert!(!verifier().verify(query, &changed, "GvWf1cFY/Q7PnoempGyD5oXAezc="));
        assert!(!verifier().verify(Some("foo=1"), &params, "GvWf1cFY/Q7PnoempGyD5oXAezc="));
        assert!(!verifier().verify(query, &params, "not base64!"));
    }

    #[test]
    fn a_signed_batch_verifies_under_its_key_only_and_not_when_changed() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let spki = [&P256_SPKI_PREFIX[..], pair.public_key().as_ref()].concat();
        let verifier = SendgridVerifier::new(&STANDARD.encode(&spki)).unwrap();
        let body = br#"[{"event":"delivered"}]"#;
        let signature = pair.sign(&rng, &[&b"1700000000"[..], body].concat()).unwrap();
        let signature = STANDARD.encode(signature.as_ref());
        assert!(verifier.verify("1700000000", body, &signature));
        assert!(!verifier.verify("1700000001", body, &signature), "another timestamp");
        assert!(!verifier.verify("1700000000", br#"[{"event":"bounce"}]"#, &signature));
        assert!(SendgridVerifier::new("bm90IGEga2V5").is_err());
    }
}
