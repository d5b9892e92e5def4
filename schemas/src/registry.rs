//! How Herald reaches the schema registry: its URL, login, TLS (a private CA, a client
//! certificate), proxy, and whether Herald may register schemas there or only look them up.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::SrSettings;

/// How to reach the schema registry.
#[derive(Clone)]
pub struct RegistryConfig {
    pub url: String,
    pub basic_auth: Option<(String, String)>,
    pub timeout: Duration,
    /// PEM certificates of CAs trusted besides the public roots (a private registry's).
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, PEM files, for a registry that asks for one.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The proxy every call goes through. `None`: the environment's (`HTTPS_PROXY`,
    /// `HTTP_PROXY`, `NO_PROXY`), as other HTTP clients on the host use.
    pub proxy: Option<String>,
    /// Whether schemas may be registered. `false`: they are only looked up, and `herald
    /// schemas register` is the one writer (a registry that grants roles read rights only).
    pub auto_register: bool,
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url)
            .field("basic_auth", &self.basic_auth.as_ref().map(|(user, _)| (user, "<redacted>")))
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .field("identity", &self.identity)
            .field("proxy", &self.proxy.as_ref().map(|_| "<set>"))
            .field("auto_register", &self.auto_register)
            .finish()
    }
}

impl RegistryConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            basic_auth: None,
            timeout: Duration::from_secs(10),
            ca_file: None,
            identity: None,
            proxy: None,
            auto_register: true,
        }
    }

    /// The converter's settings (its HTTP client with this TLS, proxy and login), and a
    /// client of its own with the same TLS and proxy, to tell why the registry cannot be
    /// reached (the converter keeps only the outermost error). `Err` says which setting or
    /// file is wrong.
    pub(crate) fn settings(&self) -> Result<(SrSettings, reqwest::Client), String> {
        crate::install_tls_provider();
        let tls = self.tls()?;
        let mut probe = tls.apply(reqwest::Client::builder()).timeout(self.timeout);
        if let Some(proxy) = &self.proxy {
            probe = probe.proxy(
                reqwest::Proxy::all(proxy)
                    .map_err(|e| format!("schema_registry.proxy: {}", error_chain(&e)))?,
            );
        }
        let probe = probe.build().map_err(|e| error_chain(&e))?;
        let mut builder = SrSettings::new_builder(self.url.clone());
        builder.set_timeout(self.timeout);
        if let Some(proxy) = &self.proxy {
            builder.set_proxy(proxy);
        }
        if let Some((user, password)) = &self.basic_auth {
            builder.set_basic_authorization(user, Some(password));
        }
        let settings = builder.build_with(tls.apply(reqwest::Client::builder())).map_err(|e| {
            match &e.cause {
                Some(cause) => format!("{}: {cause}", e.error),
                None => e.error.clone(),
            }
        })?;
        Ok((settings, probe))
    }

    /// The CAs `ca_file` holds and the client certificate `cert_file` and `key_file` make,
    /// each file read once.
    fn tls(&self) -> Result<Tls, String> {
        let mut roots = Vec::new();
        if let Some(file) = &self.ca_file {
            let pem = read(file, "schema_registry.ca_file")?;
            roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("schema_registry.ca_file {}: {e}", file.display()))?;
            if roots.is_empty() {
                return Err(format!(
                    "schema_registry.ca_file {} holds no PEM certificate",
                    file.display()
                ));
            }
        }
        let mut identity = None;
        if let Some((cert, key)) = &self.identity {
            let mut pem = read(cert, "schema_registry.cert_file")?;
            pem.push(b'\n');
            pem.extend(read(key, "schema_registry.key_file")?);
            identity = Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!(
                    "schema_registry.cert_file {} with key_file {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?);
        }
        Ok(Tls { roots, identity })
    }
}

/// What an HTTP client to the registry trusts and presents (and how it uses connections).
struct Tls {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

impl Tls {
    fn apply(&self, client: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        // A connection per call: calls are few (start-up, a schema id not seen before), and
        // some proxies (tinyproxy) close a connection after one request without saying so,
        // which makes the next call on a pooled one fail.
        let mut client = client.pool_max_idle_per_host(0);
        for root in &self.roots {
            client = client.add_root_certificate(root.clone());
        }
        if let Some(identity) = &self.identity {
            client = client.identity(identity.clone());
        }
        client
    }
}

/// Why `probe` cannot reach `url`, every cause down to the root (an unknown CA, a refused
/// client certificate, a connection refused), or `None` if it can.
pub(crate) async fn why_unreachable(probe: &reqwest::Client, url: &str) -> Option<String> {
    probe.get(url).send().await.err().map(|e| error_chain(&e))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

fn read(file: &PathBuf, setting: &str) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("{setting} {}: {e}", file.display()))
}
