//! The directory API's OpenAPI document, merged into the send API's `/openapi.json`.

use herald_runtime::http::{ErrorBody, FieldError};
use utoipa::OpenApi;

use super::Queued;
use super::templates::{TemplateBody, TemplateList, TemplateSummary, TemplateView};
use super::users::{
    DeviceBody, DeviceList, DeviceView, PreferenceList, PreferenceView, PreferencesBody, UserBody,
    UserView,
};
use crate::changes::templates::VariantRecord;

/// The `Prefer` header every write takes.
const RESPOND_ASYNC: &str = "respond-async: answered 202 as soon as the change is durable, without waiting for it to be applied (a send made after the answer still sees it)";

#[utoipa::path(get, path = "/v1/users/{user_id}", tag = "directory",
    params(("user_id" = String, Path, min_length = 1, max_length = 128, description = "Your id of the user")),
    responses(
        (status = 200, description = "The user, with their devices and preferences", body = UserView),
        (status = 404, description = "No such user", body = ErrorBody),
        Refusals,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn get_user() {}

#[utoipa::path(put, path = "/v1/users/{user_id}", tag = "directory",
    params(("user_id" = String, Path, min_length = 1, max_length = 128, description = "Your id of the user"),
        ("Prefer" = Option<String>, Header, description = RESPOND_ASYNC)),
    request_body(content = UserBody, description = "The user's fields; an absent one is cleared"),
    responses(
        (status = 200, description = "Replaced and applied", body = UserView),
        (status = 201, description = "Created and applied", body = UserView),
        Refusals,
        Queued202,
        BodyRefusals,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn put_user() {}

#[utoipa::path(patch, path = "/v1/users/{user_id}", tag = "directory",
    params(("user_id" = String, Path, min_length = 1, max_length = 128, description = "Your id of the user"),
        ("Prefer" = Option<String>, Header, description = RESPOND_ASYNC)),
    request_body(content = UserBody, description = "The fields to set; a field given as null is cleared, an absent one kept"),
    responses(
        (status = 200, description = "Changed and applied", body = UserView),
        (status = 404, description = "No such user", body = ErrorBody),
        Refusals,
        Queued202,
        BodyRefusals,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn patch_user() {}

#[utoipa::path(delete, path = "/v1/users/{user_id}", tag = "directory",
    params(("user_id" = String, Path, min_length = 1, max_length = 128, description = "Your id of the user"),
        ("Prefer" = Option<String>, Header, description = RESPOND_ASYNC)),
    responses(
        (status = 204, description = "Erased: the user, devices, preferences and frequency-cap counts (docs/directory.md says what else, and for how long)"),
        Refusals,
        Queued202,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn delete_user() {}

#[utoipa::path(get, path = "/v1/users/{user_id}/devices", tag = "directory",
    params(("user_id" = String, Path, min_length = 1, max_length = 128, description = "Your id of the user")),
    responses(
        (status = 200, description = "The user's devices", body = DeviceList),
        (status = 404, description = "No such user", body = ErrorBody),
        Refusals,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn list_devices() {}

#[utoipa::path(get, path = "/v1/users/{user_id}/devices/{device_id}", tag = "directory",
    params(
        ("user_id" = String, Path, min_length = 1, max_length = 128, description = "Your id of the user"),
        ("device_id" = String, Path, min_length = 1, max_length = 255, description = "The app's id of the installation"),
    ),
    responses(
        (status = 200, description = "The device", body = DeviceView),
        (status = 404, description = "No such user or device", body = ErrorBody),
        Refusals,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn get_device() {}

#[utoipa::path(put, path = "/v1/users/{user_id}/devices/{device_id}", tag = "directory",
    params(
        ("user_id" = String, Path, min_length = 1, max_length = 128, description = "Your id of the user"),
        ("device_id" = String, Path, min_length = 1, max_length = 255, description = "The app's id of the installation: registering it again updates it"),
        ("Prefer" = Option<String>, Header, description = RESPOND_ASYNC),
    ),
    request_body = DeviceBody,
    responses(
        (status = 200, description = "Updated and applied", body = DeviceView),
        (status = 201, description = "Registered and applied", body = DeviceView),
        (status = 404, description = "No such user: create it first", body = ErrorBody),
        Refusals,
        Queued202,
        BodyRefusals,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn put_device() {}

#[utoipa::path(delete, path = "/v1/users/{user_id}/devices/{device_id}", tag = "directory",
    params(
        ("user_id" = String, Path, min_length = 1, max_length = 128, description = "Your id of the user"),
        ("device_id" = String, Path, min_length = 1, max_length = 255, description = "The app's id of the installation"),
        ("Prefer" = Option<String>, Header, description = RESPOND_ASYNC),
    ),
    responses(
        (status = 204, description = "Removed and applied (or there was none)"),
        Refusals,
        Queued202,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn delete_device() {}

#[utoipa::path(get, path = "/v1/users/{user_id}/preferences", tag = "directory",
    params(("user_id" = String, Path, min_length = 1, max_length = 128, description = "Your id of the user")),
    responses(
        (status = 200, description = "The user's explicit choices; any other is opted in", body = PreferenceList),
        (status = 404, description = "No such user", body = ErrorBody),
        Refusals,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn get_preferences() {}

#[utoipa::path(put, path = "/v1/users/{user_id}/preferences", tag = "directory",
    params(("user_id" = String, Path, min_length = 1, max_length = 128, description = "Your id of the user"),
        ("Prefer" = Option<String>, Header, description = RESPOND_ASYNC)),
    request_body(content = PreferencesBody, description = "Choices to set; the user's others are kept"),
    responses(
        (status = 200, description = "Set and applied: every choice of the user", body = PreferenceList),
        (status = 404, description = "No such user", body = ErrorBody),
        Refusals,
        Queued202,
        BodyRefusals,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn put_preferences() {}

#[utoipa::path(get, path = "/v1/templates", tag = "directory",
    responses(
        (status = 200, description = "Every template id", body = TemplateList),
        Refusals,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn list_templates() {}

#[utoipa::path(get, path = "/v1/templates/{template_id}", tag = "directory",
    params(("template_id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,128}$", description = "The template's id")),
    responses(
        (status = 200, description = "The template, every locale and channel", body = TemplateView),
        (status = 404, description = "No such template", body = ErrorBody),
        Refusals,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn get_template() {}

#[utoipa::path(put, path = "/v1/templates/{template_id}", tag = "directory",
    params(("template_id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,128}$", description = "The template's id"),
        ("Prefer" = Option<String>, Header, description = RESPOND_ASYNC)),
    request_body(content = TemplateBody, description = "Every variant: the template becomes exactly these"),
    responses(
        (status = 200, description = "Replaced and applied", body = TemplateView),
        (status = 201, description = "Created and applied", body = TemplateView),
        Refusals,
        Queued202,
        BodyRefusals,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn put_template() {}

#[utoipa::path(delete, path = "/v1/templates/{template_id}", tag = "directory",
    params(("template_id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,128}$", description = "The template's id"),
        ("Prefer" = Option<String>, Header, description = RESPOND_ASYNC)),
    responses(
        (status = 204, description = "Removed and applied (or there was none)"),
        Refusals,
        Queued202,
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn delete_template() {}

/// What any directory call may be answered besides its own answers.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum Refusals {
    /// No key, or an unknown or revoked key.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The key may not read the directory (`GET`), or not change it (the rest): `herald
    /// clients add --directory read|write`.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// A path's id or a field failed validation, each with its reason; nothing was written.
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// Over the client's rate; see Retry-After.
    #[response(status = 429)]
    RateLimited(ErrorBody),
    /// The directory could not be read, or the change written, now.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// A write the enricher did not apply within the wait: durable, and to be applied.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum Queued202 {
    /// Durable, not applied within the wait.
    #[response(status = 202)]
    Accepted(Queued),
}

/// What a call with a body may be answered for its body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum BodyRefusals {
    /// Not JSON, or not this shape (the field that broke, in `field`).
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// Body over `ingest.max_body_bytes`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
}

#[derive(OpenApi)]
#[openapi(
    paths(
        get_user,
        put_user,
        patch_user,
        delete_user,
        list_devices,
        get_device,
        put_device,
        delete_device,
        get_preferences,
        put_preferences,
        list_templates,
        get_template,
        put_template,
        delete_template
    ),
    components(schemas(
        UserBody,
        UserView,
        DeviceBody,
        DeviceView,
        DeviceList,
        PreferencesBody,
        PreferenceView,
        PreferenceList,
        TemplateBody,
        TemplateView,
        TemplateList,
        TemplateSummary,
        VariantRecord,
        Queued,
        ErrorBody,
        FieldError
    ))
)]
struct DirectoryDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    DirectoryDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_documents_its_refusals_and_every_write_its_202() {
        let doc = serde_json::to_value(document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), 6, "{:?}", paths.keys());
        let mut operations = 0;
        for (path, methods) in paths {
            for (method, operation) in methods.as_object().unwrap() {
                operations += 1;
                let statuses = operation["responses"].as_object().unwrap();
                for status in ["401", "403", "422", "429", "503"] {
                    assert!(statuses.contains_key(status), "{method} {path} lacks {status}");
                }
                if method != "get" {
                    assert!(statuses.contains_key("202"), "{method} {path} lacks 202");
                }
                let content = &statuses["422"]["content"]["application/json"]["schema"];
                assert_eq!(content["$ref"], "#/components/schemas/ErrorBody", "{method} {path}");
            }
        }
        assert_eq!(operations, 14);
    }
}
