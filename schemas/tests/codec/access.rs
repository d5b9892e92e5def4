//! How the codec reaches a hardened registry: over HTTPS trusting a private CA, presenting a
//! client certificate where one is required, and with `auto_register` off only looking
//! Herald's schemas up, never writing.

use std::path::PathBuf;

use herald_schemas::{AvroCodec, EncodeError, NotificationRequest, RegistryConfig};

use super::{Registry, codec, registries, request, topic};

/// The run's Apicurio Registry over HTTPS: its own TLS, the terminator in front of it that
/// requires a client certificate, and the CA and client certificate (`infra/engines/apicurio.sh`).
struct Https {
    tls: String,
    mtls: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn https() -> Option<Https> {
    let var = |name: &str| herald_testkit::required(name, "Apicurio Registry over HTTPS");
    Some(Https {
        tls: var("HERALD_TEST_REGISTRY_TLS")?,
        mtls: var("HERALD_TEST_REGISTRY_MTLS")?,
        ca: var("HERALD_TEST_REGISTRY_CA")?.into(),
        cert: var("HERALD_TEST_REGISTRY_CERT")?.into(),
        key: var("HERALD_TEST_REGISTRY_KEY")?.into(),
    })
}

/// Registers a request's schema under a topic of its own through `config`.
async fn register(config: &RegistryConfig) -> Result<u32, String> {
    let codec = AvroCodec::new(config).map_err(|e| e.to_string())?;
    codec.register::<NotificationRequest>(&topic("requests")).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_registry_is_reached_over_https_with_a_private_ca_and_a_client_certificate() {
    let Some(https) = https() else { return };
    let trusting = |url: &str| RegistryConfig {
        ca_file: Some(https.ca.clone()),
        ..RegistryConfig::new(url.to_owned())
    };

    let id = register(&trusting(&https.tls)).await;
    assert!(id.is_ok(), "the registry's HTTPS, its CA trusted: {id:?}");
    let untrusted = register(&RegistryConfig::new(https.tls.clone())).await.unwrap_err();
    assert!(untrusted.contains("UnknownIssuer"), "the public roots alone: {untrusted}");

    let with_certificate = RegistryConfig {
        identity: Some((https.cert.clone(), https.key.clone())),
        ..trusting(&https.mtls)
    };
    let id = register(&with_certificate).await;
    assert!(id.is_ok(), "a client certificate where one is required: {id:?}");
    let without = register(&trusting(&https.mtls)).await.unwrap_err();
    assert!(without.contains("CertificateRequired"), "names the cause: {without}");

    // A key file that holds no key, and a CA file that is not there, name their setting.
    let no_key = RegistryConfig {
        identity: Some((https.cert.clone(), https.ca.clone())),
        ..trusting(&https.mtls)
    };
    let refused = AvroCodec::new(&no_key).unwrap_err().to_string();
    assert!(refused.contains("schema_registry.cert_file"), "names the setting: {refused}");
    let missing =
        RegistryConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..trusting(&https.tls) };
    let refused = AvroCodec::new(&missing).unwrap_err().to_string();
    assert!(
        refused.contains("schema_registry.ca_file /nonexistent/ca.pem"),
        "names the setting and the file: {refused}"
    );
}

/// Whether the registry has `subject`, asked for by name (its list of every subject may be
/// cut short).
async fn has_subject(registry: &Registry, subject: &str) -> bool {
    herald_schemas::install_tls_provider();
    let url = format!("{}/subjects/{subject}/versions", registry.url);
    let status = reqwest::get(url).await.unwrap().status();
    assert!(status.is_success() || status == 404, "{}: {subject}: {status}", registry.name);
    status.is_success()
}

#[tokio::test]
async fn with_auto_register_off_schemas_are_only_looked_up_and_a_missing_one_is_named() {
    for registry in registries().await {
        let read_only = AvroCodec::new(&RegistryConfig {
            auto_register: false,
            ..RegistryConfig::new(registry.url.clone())
        })
        .unwrap();
        let topic = topic("requests");
        let subject = format!("{topic}-value");

        let missing = read_only.register::<NotificationRequest>(&topic).await.unwrap_err();
        assert!(
            matches!(&missing, EncodeError::Unregistered { subject: s, .. } if *s == subject),
            "{}: {missing}",
            registry.name
        );
        assert!(missing.to_string().contains("herald schemas register"), "{missing}");
        assert!(!missing.is_retryable(), "{missing}");
        let unsent = read_only.encode(&topic, &request()).await.unwrap_err();
        assert!(matches!(unsent, EncodeError::Unregistered { .. }), "{unsent}");
        assert!(
            !has_subject(&registry, &subject).await,
            "{}: a read-only codec registered {subject}",
            registry.name
        );

        // Once registered by the one writer, the read-only codec finds the same id.
        let registered = codec(&registry).register::<NotificationRequest>(&topic).await.unwrap();
        assert!(has_subject(&registry, &subject).await, "{}", registry.name);
        let found = read_only.register::<NotificationRequest>(&topic).await.unwrap();
        assert_eq!(found, registered, "{}", registry.name);
        let bytes = read_only.encode(&topic, &request()).await.unwrap();
        assert_eq!(bytes[1..5], registered.to_be_bytes(), "{}", registry.name);
        let decoded = codec(&registry).decode::<NotificationRequest>(Some(&bytes)).await.unwrap();
        assert_eq!(decoded, request(), "{}", registry.name);
    }
}
