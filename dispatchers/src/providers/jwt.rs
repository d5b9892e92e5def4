//! Compact JWTs signed with the provider's key: RS256 for Google service accounts (FCM),
//! ES256 for APNs provider tokens. ring does the signing; nothing else is needed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key is not PEM: {0}")]
    Pem(String),
    #[error("the key is not a usable {kind} key: {reason}")]
    Rejected { kind: &'static str, reason: String },
    #[error("signing failed")]
    Sign,
}

/// The DER body of the first PEM block (`-----BEGIN ...-----`).
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, KeyError> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    if body.is_empty() {
        return Err(KeyError::Pem("no PEM block found".into()));
    }
    base64::engine::general_purpose::STANDARD.decode(body).map_err(|e| KeyError::Pem(e.to_string()))
}

/// Signs JWTs with a key parsed once.
pub enum Signer {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signer::Rs256(_) => "Signer::Rs256(<key>)",
            Signer::Es256(_) => "Signer::Es256(<key>)",
        })
    }
}

impl Signer {
    /// An RSA key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as in service-account keys.
    pub fn rs256(pem: &str) -> Result<Self, KeyError> {
        let der = pem_to_der(pem)?;
        RsaKeyPair::from_pkcs8(&der)
            .map(Signer::Rs256)
            .map_err(|e| KeyError::Rejected { kind: "RSA", reason: e.to_string() })
    }

    /// A P-256 key in PKCS#8 PEM, as in APNs `.p8` files.
    pub fn es256(pem: &str) -> Result<Self, KeyError> {
        let der = pem_to_der(pem)?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
            .map(Signer::Es256)
            .map_err(|e| KeyError::Rejected { kind: "P-256", reason: e.to_string() })
    }

    fn algorithm(&self) -> &'static str {
        match self {
            Signer::Rs256(_) => "RS256",
            Signer::Es256(_) => "ES256",
        }
    }

    /// `header.claims.signature`; `header_extra` adds fields such as `kid`.
    pub fn sign(
        &self,
        header_extra: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> Result<String, KeyError> {
        let mut header = serde_json::json!({"alg": self.algorithm(), "typ": "JWT"});
        if let (Some(h), Some(extra)) = (header.as_object_mut(), header_extra.as_object()) {
            h.extend(extra.clone());
        }
        let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let signing_input = format!("{}.{}", encode(&header), encode(claims));
        let rng = SystemRandom::new();
        let signature = match self {
            Signer::Rs256(key) => {
                let mut out = vec![0; key.public().modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, signing_input.as_bytes(), &mut out)
                    .map_err(|_| KeyError::Sign)?;
                out
            }
            Signer::Es256(key) => key
                .sign(&rng, signing_input.as_bytes())
                .map_err(|_| KeyError::Sign)?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The public key, for the tests that verify what was signed.
    #[cfg(test)]
    pub fn public_key(&self) -> Vec<u8> {
        use ring::signature::KeyPair;
        match self {
            Signer::Rs256(key) => key.public().as_ref().to_vec(),
            Signer::Es256(key) => key.public_key().as_ref().to_vec(),
        }
    }
}

/// Checks a JWT's signature against `public_key` and returns its header and claims.
#[cfg(test)]
pub fn verify(
    token: &str,
    public_key: &[u8],
) -> Result<(serde_json::Value, serde_json::Value), String> {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWT".into());
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string());
    let header: serde_json::Value =
        serde_json::from_slice(&decode(h)?).map_err(|e| e.to_string())?;
    let claims: serde_json::Value =
        serde_json::from_slice(&decode(c)?).map_err(|e| e.to_string())?;
    let algorithm: &dyn ring::signature::VerificationAlgorithm = match header["alg"].as_str() {
        Some("RS256") => &RSA_PKCS1_2048_8192_SHA256,
        Some("ES256") => &ECDSA_P256_SHA256_FIXED,
        other => return Err(format!("unsupported alg {other:?}")),
    };
    UnparsedPublicKey::new(algorithm, public_key)
        .verify(format!("{h}.{c}").as_bytes(), &decode(s)?)
        .map_err(|_| "bad signature".to_owned())?;
    Ok((header, claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P8: &str = include_str!("../../tests/fixtures/apns-AuthKey_TEST123456.p8");

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let signer = Signer::es256(P8).unwrap();
        let token = signer
            .sign(
                &serde_json::json!({"kid": "TEST123456"}),
                &serde_json::json!({"iss": "TEAM", "iat": 1}),
            )
            .unwrap();
        let (header, claims) = verify(&token, &signer.public_key()).unwrap();
        assert_eq!(header["kid"], "TEST123456");
        assert_eq!(claims["iss"], "TEAM");
        let tampered = token.replacen('.', ".e30.", 1);
        assert!(verify(&tampered, &signer.public_key()).is_err());
        assert!(Signer::rs256(P8).is_err(), "an EC key is not an RSA key");
    }
}
