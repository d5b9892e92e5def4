//! `/v1/users/{user_id}`: a user, their devices and their preferences.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use herald_runtime::http::FieldError;
use herald_schemas::{DeviceFields, DirectoryChange, DirectoryOp, PreferenceFields, UserFields};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Answer, Body, DirectoryApi, Respond, not_found, path, refused, unavailable};
use crate::changes::{MAX_NAME, check, user_id_error};
use crate::directory::{Device, Directory, Preference, Profile};

/// A user's contact fields. `PUT` sets exactly these (an absent field is cleared); `PATCH`
/// sets those given and clears those given as `null`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    #[schema(example = "ji@example.com")]
    pub email: Option<String>,
    /// E.164.
    #[schema(example = "+14155550100")]
    pub phone: Option<String>,
    /// BCP 47: the template locale tried first.
    #[schema(example = "ko-KR")]
    pub locale: Option<String>,
    /// IANA: quiet hours and frequency caps count in it.
    #[schema(example = "Asia/Seoul")]
    pub timezone: Option<String>,
    /// Selects provider routes (e.g. CN for JPush).
    #[schema(example = "KR")]
    pub region: Option<String>,
    /// `HH:MM-HH:MM` in `timezone`: non-critical pushes and SMS wait until it ends.
    #[schema(example = "22:00-07:30")]
    pub quiet_hours: Option<String>,
}

/// A device registered for push.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceBody {
    /// ios or android.
    #[schema(example = "android")]
    pub platform: String,
    /// The APNs token (hex) or the FCM, JPush or Pushy registration token. A token another
    /// device carried leaves that device.
    pub token: String,
    /// The app's bundle or package id, for routes by app.
    pub app_id: Option<String>,
    /// False stops targeting the device without removing it.
    #[serde(default = "active")]
    pub active: bool,
}

fn active() -> bool {
    true
}

/// Preferences to set; the user's others stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesBody {
    pub preferences: Vec<PreferenceView>,
}

/// An explicit choice for one category on one channel; no choice means opted in.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferenceView {
    #[schema(example = "marketing")]
    pub category: String,
    /// email, sms or push.
    #[schema(example = "sms")]
    pub channel: String,
    pub opted_in: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub device_id: String,
    pub platform: &'static str,
    pub token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    pub active: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PreferenceList {
    pub preferences: Vec<PreferenceView>,
}

/// A user as the directory holds them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<String>,
    pub devices: Vec<DeviceView>,
    pub preferences: Vec<PreferenceView>,
}

fn device_view(device: Device) -> DeviceView {
    DeviceView {
        device_id: device.device_id,
        platform: device.platform.as_str(),
        token: device.token,
        app_id: device.app_id,
        active: device.active,
    }
}

fn preference_view(preference: Preference) -> PreferenceView {
    PreferenceView {
        category: preference.category,
        channel: preference.channel,
        opted_in: preference.opted_in,
    }
}

fn user_view(profile: Profile) -> UserView {
    let Profile { user, devices, preferences } = profile;
    UserView {
        user_id: user.user_id,
        email: user.email,
        phone: user.phone,
        locale: user.locale,
        timezone: user.timezone,
        region: user.region,
        quiet_hours: user.quiet_hours,
        devices: devices.into_iter().map(device_view).collect(),
        preferences: preferences.into_iter().map(preference_view).collect(),
    }
}

type Api<D> = State<Arc<DirectoryApi<D>>>;

/// The path's user id, checked.
pub(super) struct UserPath(String);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let id: String = path(parts, state).await?;
        match user_id_error(&id) {
            Some(reason) => Err(refused(vec![FieldError { field: "user_id".into(), reason }])),
            None => Ok(Self(id)),
        }
    }
}

/// The path's user and device ids, checked.
pub(super) struct DevicePath(String, String);

impl<S: Send + Sync> FromRequestParts<S> for DevicePath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let (user, device): (String, String) = path(parts, state).await?;
        let mut errors = Vec::new();
        if let Some(reason) = user_id_error(&user) {
            errors.push(FieldError { field: "user_id".into(), reason });
        }
        if device.is_empty() || device.len() > MAX_NAME || device.chars().any(char::is_control) {
            let reason = format!("must be 1 to {MAX_NAME} printable characters");
            errors.push(FieldError { field: "device_id".into(), reason });
        }
        if errors.is_empty() { Ok(Self(user, device)) } else { Err(refused(errors)) }
    }
}

/// A change's failed rules, named as the API's bodies name fields.
fn checked(change: &DirectoryChange) -> Result<(), Response> {
    let errors = check(change);
    if errors.is_empty() {
        return Ok(());
    }
    let errors = errors
        .into_iter()
        .map(|e| FieldError {
            field: e
                .field
                .strip_prefix("user.")
                .or(e.field.strip_prefix("device."))
                .unwrap_or(&e.field)
                .to_owned(),
            reason: e.reason,
        })
        .collect();
    Err(refused(errors))
}

/// The user, or the 404 answer.
async fn profile<D: Directory>(api: &DirectoryApi<D>, id: &str) -> Result<Profile, Response> {
    api.store.profile(id).await.map_err(|e| unavailable(&e))?.ok_or_else(|| unknown_user(id))
}

fn unknown_user(id: &str) -> Response {
    not_found(format!("unknown user {id:?}: create it with PUT /v1/users/{{user_id}}"))
}

fn created_or_replaced(existed: bool) -> StatusCode {
    if existed { StatusCode::OK } else { StatusCode::CREATED }
}

pub(super) async fn get<D: Directory>(State(api): Api<D>, UserPath(id): UserPath) -> Answer {
    Ok(Json(user_view(profile(&api, &id).await?)).into_response())
}

pub(super) async fn put<D: Directory>(
    State(api): Api<D>,
    UserPath(id): UserPath,
    respond: Respond,
    Body(fields): Body<UserBody>,
) -> Answer {
    let mut change = DirectoryChange::new(&id, DirectoryOp::PutUser);
    change.user = Some(UserFields {
        email: fields.email,
        phone: fields.phone,
        locale: fields.locale,
        timezone: fields.timezone,
        region: fields.region,
        quiet_hours: fields.quiet_hours,
        unset: Vec::new(),
    });
    write_user(&api, &id, &change, (false, respond)).await
}

pub(super) async fn patch<D: Directory>(
    State(api): Api<D>,
    UserPath(id): UserPath,
    respond: Respond,
    Body(patch): Body<serde_json::Map<String, Value>>,
) -> Answer {
    let mut fields = UserFields::default();
    for (name, value) in patch {
        let slot = match name.as_str() {
            "email" => &mut fields.email,
            "phone" => &mut fields.phone,
            "locale" => &mut fields.locale,
            "timezone" => &mut fields.timezone,
            "region" => &mut fields.region,
            "quiet_hours" => &mut fields.quiet_hours,
            _ => {
                let message = format!(
                    "unknown field `{name}`, expected one of {}",
                    UserFields::NAMES.join(", ")
                );
                return Err(herald_runtime::http::invalid_json(name, message));
            }
        };
        match value {
            Value::String(text) => *slot = Some(text),
            Value::Null => fields.unset.push(name),
            _ => {
                let message = "expected a string, or null to clear it";
                return Err(herald_runtime::http::invalid_json(name, message));
            }
        }
    }
    if fields == UserFields::default() {
        let reason = "name at least one field to set (or null to clear)".to_owned();
        return Err(refused(vec![FieldError { field: "body".into(), reason }]));
    }
    let mut change = DirectoryChange::new(&id, DirectoryOp::PatchUser);
    change.user = Some(fields);
    write_user(&api, &id, &change, (true, respond)).await
}

/// Writes a `put_user` or `patch_user` (which needs the user) and answers with the user.
async fn write_user<D: Directory>(
    api: &DirectoryApi<D>,
    id: &str,
    change: &DirectoryChange,
    (existing, respond): (bool, Respond),
) -> Answer {
    checked(change)?;
    let existed = api.store.user(id).await.map_err(|e| unavailable(&e))?.is_some();
    if existing && !existed {
        return Err(unknown_user(id));
    }
    api.apply(&api.changes_topic(), api.writer.change(change).await, respond).await?;
    let view = user_view(profile(api, id).await?);
    Ok((created_or_replaced(existed), Json(view)).into_response())
}

pub(super) async fn delete<D: Directory>(
    State(api): Api<D>,
    UserPath(id): UserPath,
    respond: Respond,
) -> Answer {
    api.apply(&api.changes_topic(), api.writer.erase(&id).await, respond).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn devices<D: Directory>(State(api): Api<D>, UserPath(id): UserPath) -> Answer {
    let devices = profile(&api, &id).await?.devices.into_iter().map(device_view).collect();
    Ok(Json(DeviceList { devices }).into_response())
}

/// A user's device; `Err` answers when the user or the device does not exist.
async fn find_device<D: Directory>(
    api: &DirectoryApi<D>,
    user: &str,
    device: &str,
) -> Result<Option<Device>, Response> {
    Ok(profile(api, user).await?.devices.into_iter().find(|d| d.device_id == device))
}

fn unknown_device(user: &str, device: &str) -> Response {
    not_found(format!("user {user:?} has no device {device:?}"))
}

pub(super) async fn device<D: Directory>(
    State(api): Api<D>,
    DevicePath(user, device): DevicePath,
) -> Answer {
    let found = find_device(&api, &user, &device).await?;
    let found = found.ok_or_else(|| unknown_device(&user, &device))?;
    Ok(Json(device_view(found)).into_response())
}

pub(super) async fn put_device<D: Directory>(
    State(api): Api<D>,
    DevicePath(user, device_id): DevicePath,
    respond: Respond,
    Body(body): Body<DeviceBody>,
) -> Answer {
    let mut change = DirectoryChange::new(&user, DirectoryOp::PutDevice);
    change.device = Some(DeviceFields {
        device_id: Some(device_id.clone()),
        platform: Some(body.platform),
        token: Some(body.token),
        app_id: body.app_id,
        active: body.active,
    });
    checked(&change)?;
    let existed = find_device(&api, &user, &device_id).await?.is_some();
    api.apply(&api.changes_topic(), api.writer.change(&change).await, respond).await?;
    // Applied as written: the device is what the change says (a checked change converts).
    let device = change.device.as_ref().and_then(crate::changes::device_of);
    let device = device.ok_or_else(|| unknown_device(&user, &device_id))?;
    Ok((created_or_replaced(existed), Json(device_view(device))).into_response())
}

pub(super) async fn delete_device<D: Directory>(
    State(api): Api<D>,
    DevicePath(user, device_id): DevicePath,
    respond: Respond,
) -> Answer {
    let mut change = DirectoryChange::new(&user, DirectoryOp::RemoveDevice);
    change.device = Some(DeviceFields { device_id: Some(device_id), ..DeviceFields::default() });
    api.apply(&api.changes_topic(), api.writer.change(&change).await, respond).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn preference_list(preferences: Vec<Preference>) -> Json<PreferenceList> {
    Json(PreferenceList { preferences: preferences.into_iter().map(preference_view).collect() })
}

pub(super) async fn preferences<D: Directory>(
    State(api): Api<D>,
    UserPath(id): UserPath,
) -> Answer {
    Ok(preference_list(profile(&api, &id).await?.preferences).into_response())
}

pub(super) async fn put_preferences<D: Directory>(
    State(api): Api<D>,
    UserPath(id): UserPath,
    respond: Respond,
    Body(body): Body<PreferencesBody>,
) -> Answer {
    let mut change = DirectoryChange::new(&id, DirectoryOp::SetPreferences);
    change.preferences = body
        .preferences
        .into_iter()
        .map(|p| PreferenceFields {
            category: p.category,
            channel: p.channel,
            opted_in: p.opted_in,
        })
        .collect();
    checked(&change)?;
    if api.store.user(&id).await.map_err(|e| unavailable(&e))?.is_none() {
        return Err(unknown_user(&id));
    }
    api.apply(&api.changes_topic(), api.writer.change(&change).await, respond).await?;
    let preferences = api.store.preferences(&id).await.map_err(|e| unavailable(&e))?;
    Ok(preference_list(preferences).into_response())
}
