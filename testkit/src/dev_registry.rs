//! A development schema registry: the subset of the Confluent Schema Registry REST API that
//! `schema_registry_converter` and Confluent's own serializers use (register a subject version,
//! look a schema up under a subject, get a schema by id, latest or numbered version of a
//! subject, compatibility check). It keeps everything in memory and enforces BACKWARD
//! compatibility per subject. It exists so that `herald dev` and the tests need no external
//! service; production points Herald at a real Confluent-compatible registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, Default)]
struct Registry {
    /// Index = schema id - 1. Ids are global, as in Confluent's registry.
    schemas: Vec<StoredSchema>,
    /// Subject -> schema id of each version, version n at index n - 1.
    subjects: BTreeMap<String, Vec<u32>>,
}

#[derive(Debug)]
struct StoredSchema {
    text: String,
    canonical: String,
    parsed: Schema,
}

#[derive(Debug, Clone, Default)]
pub struct DevRegistry {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

struct ApiError(StatusCode, u32, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.1, "message": self.2});
        (self.0, [(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
    }
}

fn ok(body: &Value) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

fn subject_not_found(subject: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found."))
}

fn parse_body(body: &SchemaBody) -> Result<Schema, ApiError> {
    if let Some(kind) = body.schema_type.as_deref().filter(|k| *k != "AVRO") {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            format!("schema type {kind} is not supported by the development registry (AVRO only)"),
        ));
    }
    if !body.references.is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "schema references are not supported by the development registry".into(),
        ));
    }
    Schema::parse_str(&body.schema).map_err(|e| {
        ApiError(StatusCode::UNPROCESSABLE_ENTITY, 42201, format!("Invalid schema: {e}"))
    })
}

impl DevRegistry {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the maps half-updated (every update is
        // a single push), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(|| async { ok(&json!({})) }))
            .route("/config", get(|| async { ok(&json!({"compatibilityLevel": "BACKWARD"})) }))
            .route("/subjects", get(list_subjects))
            .route("/subjects/{subject}", post(lookup_under_subject))
            .route("/subjects/{subject}/versions", get(list_versions).post(register))
            .route("/subjects/{subject}/versions/{version}", get(get_version))
            .route("/schemas/ids/{id}", get(get_by_id))
            .route(
                "/compatibility/subjects/{subject}/versions/{version}",
                post(check_compatibility),
            )
            .with_state(self.clone())
    }

    /// Serves the registry on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }

    /// Binds `addr` and serves in a background task; returns the bound address.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(e) = self.serve(listener, std::future::pending()).await {
                tracing::error!(error = %e, "development schema registry stopped");
            }
        });
        Ok(bound)
    }

    fn version_of(reg: &Registry, subject: &str, version: &str) -> Result<(u32, u32), ApiError> {
        let versions = reg.subjects.get(subject).ok_or_else(|| subject_not_found(subject))?;
        let index = match version {
            "latest" | "-1" => versions.len().checked_sub(1),
            n => n.parse::<usize>().ok().and_then(|n| n.checked_sub(1)),
        };
        let not_found =
            || ApiError(StatusCode::NOT_FOUND, 40402, format!("Version {version} not found."));
        let index = index.filter(|i| *i < versions.len()).ok_or_else(not_found)?;
        let version = u32::try_from(index + 1).map_err(|_| not_found())?;
        Ok((version, versions[index]))
    }
}

async fn list_subjects(State(reg): State<DevRegistry>) -> Response {
    ok(&json!(reg.lock().subjects.keys().collect::<Vec<_>>()))
}

async fn list_versions(
    State(reg): State<DevRegistry>,
    Path(subject): Path<String>,
) -> Result<Response, ApiError> {
    let reg = reg.lock();
    let versions = reg.subjects.get(&subject).ok_or_else(|| subject_not_found(&subject))?;
    Ok(ok(&json!((1..=versions.len()).collect::<Vec<_>>())))
}

async fn get_version(
    State(reg): State<DevRegistry>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let reg = reg.lock();
    let (version, id) = DevRegistry::version_of(&reg, &subject, &version)?;
    let schema = &reg.schemas[id as usize - 1].text;
    Ok(ok(&json!({"subject": subject, "version": version, "id": id, "schema": schema})))
}

async fn get_by_id(
    State(reg): State<DevRegistry>,
    Path(id): Path<u32>,
) -> Result<Response, ApiError> {
    let reg = reg.lock();
    let stored = (id as usize).checked_sub(1).and_then(|i| reg.schemas.get(i));
    let stored = stored
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, 40403, format!("Schema {id} not found")))?;
    Ok(ok(&json!({"schema": stored.text})))
}

async fn register(
    State(reg): State<DevRegistry>,
    Path(subject): Path<String>,
    Json(body): Json<SchemaBody>,
) -> Result<Response, ApiError> {
    let parsed = parse_body(&body)?;
    let canonical = parsed.canonical_form();
    let mut reg = reg.lock();
    let versions = reg.subjects.get(&subject).cloned().unwrap_or_default();
    if let Some(id) =
        versions.iter().find(|id| reg.schemas[**id as usize - 1].canonical == canonical)
    {
        return Ok(ok(&json!({"id": id})));
    }
    if let Some(latest) = versions.last() {
        let writer = &reg.schemas[*latest as usize - 1].parsed;
        if let Err(e) = SchemaCompatibility::can_read(writer, &parsed) {
            return Err(ApiError(
                StatusCode::CONFLICT,
                409,
                format!(
                    "Schema being registered is incompatible with an earlier schema for subject \"{subject}\": {e}"
                ),
            ));
        }
    }
    let existing = reg.schemas.iter().position(|s| s.canonical == canonical);
    let index = match existing {
        Some(index) => index,
        None => {
            reg.schemas.push(StoredSchema { text: body.schema, canonical, parsed });
            reg.schemas.len() - 1
        }
    };
    let id = u32::try_from(index + 1).map_err(|_| {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, 50001, "too many schemas".into())
    })?;
    reg.subjects.entry(subject).or_default().push(id);
    Ok(ok(&json!({"id": id})))
}

async fn lookup_under_subject(
    State(reg): State<DevRegistry>,
    Path(subject): Path<String>,
    Json(body): Json<SchemaBody>,
) -> Result<Response, ApiError> {
    let canonical = parse_body(&body)?.canonical_form();
    let reg = reg.lock();
    let versions = reg.subjects.get(&subject).ok_or_else(|| subject_not_found(&subject))?;
    let found = versions
        .iter()
        .enumerate()
        .find(|(_, id)| reg.schemas[**id as usize - 1].canonical == canonical);
    let (index, id) =
        found.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, 40403, "Schema not found".into()))?;
    let schema = &reg.schemas[*id as usize - 1].text;
    Ok(ok(&json!({"subject": subject, "version": index + 1, "id": id, "schema": schema})))
}

async fn check_compatibility(
    State(reg): State<DevRegistry>,
    Path((subject, version)): Path<(String, String)>,
    Json(body): Json<SchemaBody>,
) -> Result<Response, ApiError> {
    let parsed = parse_body(&body)?;
    let reg = reg.lock();
    let (_, id) = DevRegistry::version_of(&reg, &subject, &version)?;
    let writer = &reg.schemas[id as usize - 1].parsed;
    let compatible = SchemaCompatibility::can_read(writer, &parsed).is_ok();
    Ok(ok(&json!({"is_compatible": compatible})))
}
