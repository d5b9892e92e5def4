//! JSON Web Tokens as the providers check them (RFC 7515, 7518, 7519), written from those
//! documents and the providers' own, never from the dispatcher's signer: a bug in how Herald
//! signs must fail here, not be repeated.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use serde_json::Value;

/// The signing algorithm a provider requires: APNs ES256 (a P-256 .p8 key), Google's OAuth
/// token endpoint RS256 (the service account's RSA key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Es256,
    Rs256,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }
}

/// The DER body of a PEM block such as `-----BEGIN PRIVATE KEY-----` (RFC 7468).
fn pem_body(pem: &str) -> anyhow::Result<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("-----"))
        .collect();
    Ok(STANDARD.decode(body)?)
}

/// The public key a provider keeps for a PKCS#8 private key it issued (Apple's .p8, a
/// Google service account's `private_key`).
pub(crate) fn public_key(alg: Alg, private_pem: &str) -> anyhow::Result<Vec<u8>> {
    let der = pem_body(private_pem)?;
    let key = match alg {
        Alg::Es256 => {
            let rng = SystemRandom::new();
            let fixed = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pair = EcdsaKeyPair::from_pkcs8(fixed, &der, &rng)
                .map_err(|e| anyhow::anyhow!("not a P-256 PKCS#8 key: {e}"))?;
            pair.public_key().as_ref().to_vec()
        }
        Alg::Rs256 => {
            let pair = RsaKeyPair::from_pkcs8(&der)
                .map_err(|e| anyhow::anyhow!("not an RSA PKCS#8 key: {e}"))?;
            pair.public_key().as_ref().to_vec()
        }
    };
    Ok(key)
}

/// The header and claims of a compact JWS signed with `alg` by the key whose public half is
/// `public_key`. A token naming another algorithm (`none` among them) is refused, as the
/// providers refuse it.
pub(crate) fn verify(token: &str, alg: Alg, public_key: &[u8]) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, sig] = parts[..] else {
        return Err("not three base64url parts".into());
    };
    let json = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let (header_json, claims_json) = (json(header)?, json(claims)?);
    if header_json["alg"] != alg.name() {
        return Err(format!("alg must be {}", alg.name()));
    }
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|e| e.to_string())?;
    let algorithm: &dyn signature::VerificationAlgorithm = match alg {
        Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
    };
    let signed = &token[..header.len() + 1 + claims.len()];
    UnparsedPublicKey::new(algorithm, public_key)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| "bad signature".to_owned())?;
    Ok((header_json, claims_json))
}

/// A fresh P-256 key in Apple's .p8 form (PKCS#8 PEM), as Apple issues them.
pub(crate) fn new_p8_key() -> anyhow::Result<String> {
    let rng = SystemRandom::new();
    let fixed = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(fixed, &rng)
        .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
    let encoded = STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> =
        encoded.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    Ok(format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n")))
}

/// Signs as a provider's client would: for the stand-ins' own tests.
#[cfg(test)]
pub(crate) fn sign_es256(private_pem: &str, header: &Value, claims: &Value) -> String {
    #![allow(clippy::unwrap_used)]
    let der = pem_body(private_pem).unwrap();
    let rng = SystemRandom::new();
    let fixed = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pair = EcdsaKeyPair::from_pkcs8(fixed, &der, &rng).unwrap();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = pair.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    const P8: &str = include_str!("../../../dispatchers/tests/fixtures/apns-AuthKey_TEST123456.p8");

    #[test]
    fn a_token_verifies_only_with_its_algorithm_and_untouched() {
        let key = public_key(Alg::Es256, P8).unwrap();
        let token = sign_es256(P8, &json!({"alg": "ES256", "kid": "K"}), &json!({"iss": "T"}));
        let (header, claims) = verify(&token, Alg::Es256, &key).unwrap();
        assert_eq!((header["kid"].as_str(), claims["iss"].as_str()), (Some("K"), Some("T")));
        assert!(verify(&token, Alg::Rs256, &key).is_err(), "another alg is refused");
        assert!(verify(&format!("{token}A"), Alg::Es256, &key).is_err(), "a changed signature");
        let none = sign_es256(P8, &json!({"alg": "none"}), &json!({"iss": "T"}));
        assert!(verify(&none, Alg::Es256, &key).is_err(), "alg none is refused");
    }
}
