//! `/v1/templates`: templates, each written whole (every locale and channel at once).

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use herald_runtime::http::FieldError;
use serde::{Deserialize, Serialize};

use super::{Answer, Body, DirectoryApi, Respond, not_found, path, refused, unavailable};
use crate::changes::templates::{self, VariantRecord, template_id_error};
use crate::directory::Directory;

/// A template whole: it replaces every variant the template had.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    pub variants: Vec<VariantRecord>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TemplateView {
    pub template_id: String,
    /// The variables every variant uses: a send naming this template must give them in
    /// `data`.
    pub variables: Vec<String>,
    pub variants: Vec<VariantRecord>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TemplateSummary {
    pub template_id: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateSummary>,
}

type Api<D> = State<Arc<DirectoryApi<D>>>;

/// The path's template id, checked.
pub(super) struct TemplatePath(String);

impl<S: Send + Sync> FromRequestParts<S> for TemplatePath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let id: String = path(parts, state).await?;
        match template_id_error(&id) {
            Some(reason) => {
                let field = FieldError { field: "template_id".into(), reason: reason.into() };
                Err(refused(vec![field]))
            }
            None => Ok(Self(id)),
        }
    }
}

/// The template, or the 404 answer.
async fn view<D: Directory>(api: &DirectoryApi<D>, id: &str) -> Result<TemplateView, Response> {
    let variants = api.store.template(id).await.map_err(|e| unavailable(&e))?;
    if variants.is_empty() {
        return Err(not_found(format!("no template {id:?}")));
    }
    Ok(TemplateView {
        template_id: id.to_owned(),
        variables: api.renderer.required_variables(&variants),
        variants: variants.iter().map(VariantRecord::from_variant).collect(),
    })
}

pub(super) async fn list<D: Directory>(State(api): Api<D>) -> Answer {
    let ids = api.store.template_ids().await.map_err(|e| unavailable(&e))?;
    let templates = ids.into_iter().map(|template_id| TemplateSummary { template_id }).collect();
    Ok(Json(TemplateList { templates }).into_response())
}

pub(super) async fn get<D: Directory>(
    State(api): Api<D>,
    TemplatePath(id): TemplatePath,
) -> Answer {
    Ok(Json(view(&api, &id).await?).into_response())
}

pub(super) async fn put<D: Directory>(
    State(api): Api<D>,
    TemplatePath(id): TemplatePath,
    respond: Respond,
    Body(body): Body<TemplateBody>,
) -> Answer {
    let variants: Vec<_> = body.variants.into_iter().map(|v| VariantRecord::of(&id, v)).collect();
    let errors = templates::check(&id, &variants, &api.renderer);
    if !errors.is_empty() {
        return Err(refused(errors));
    }
    let existed = !api.store.template(&id).await.map_err(|e| unavailable(&e))?.is_empty();
    let record = templates::record(&variants, &api.renderer);
    let topic = api.writer.topics().templates();
    api.apply(&topic, api.writer.template(&id, Some(&record)).await, respond).await?;
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(view(&api, &id).await?)).into_response())
}

pub(super) async fn delete<D: Directory>(
    State(api): Api<D>,
    TemplatePath(id): TemplatePath,
    respond: Respond,
) -> Answer {
    let topic = api.writer.topics().templates();
    api.apply(&topic, api.writer.template(&id, None).await, respond).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
