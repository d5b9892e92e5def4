//! The directory's one way in. Every change to users, devices and preferences is a
//! [`DirectoryChange`] on `herald.directory.changes` (keyed by user id), and every template
//! is a whole [`TemplateRecord`] on `herald.templates` (keyed by template id): the directory
//! API, `herald directory import`, services producing directly and the enricher itself all
//! write there, and only [`apply::Applier`] writes the store. One writer per user, in the
//! order the user's changes were written; what it applied is known to every enricher by
//! [`crate::freshness`].
//!
//! A change is checked here, once for the API (a refusal names each field) and again when
//! it is applied (a service may have produced it): a change that fails goes to the
//! dead-letter topic with the reason, and nothing of it is applied.

pub mod apply;
pub mod progress;
pub mod templates;
pub mod writer;

use herald_schemas::{DirectoryChange, DirectoryOp, RequestedChannel, UserFields, targets};

use crate::directory::{Device, Platform, Preference, User};
use crate::quiet::{self, QuietHours};

pub use templates::TemplateRecord;
pub use writer::DirectoryWriter;

/// The longest user id, as the send API takes them.
pub const MAX_USER_ID: usize = 128;
/// The longest device id, app id, category or template id.
pub const MAX_NAME: usize = 255;
/// The most preferences one change sets.
pub const MAX_PREFERENCES: usize = 100;

/// One failed rule, with the field it is about (`user.phone`, `device.token`,
/// `preferences[2].channel`).
pub use herald_runtime::http::FieldError;

/// Every failed rule of a change, in one line: a dead letter's reason.
pub fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError { field: field.into(), reason: reason.into() });
    }

    fn name(&mut self, field: &str, value: &str, max: usize) {
        if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
            self.fail(field, format!("must be 1 to {max} printable characters"));
        }
    }
}

/// Whether `value` can be a user id: 1 to [`MAX_USER_ID`] printable characters.
pub fn user_id_error(value: &str) -> Option<String> {
    (value.is_empty() || value.len() > MAX_USER_ID || value.chars().any(char::is_control))
        .then(|| format!("must be 1 to {MAX_USER_ID} printable characters"))
}

/// A BCP 47 tag as the template fallback reads it: `ko`, `ko-KR`, `zh-Hant-TW`.
pub fn is_locale(value: &str) -> bool {
    (2..=35).contains(&value.len())
        && value.split('-').all(|part| {
            (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// Why `change` cannot be applied, field by field; empty when it can.
pub fn check(change: &DirectoryChange) -> Vec<FieldError> {
    let mut check = Checker::default();
    if let Some(reason) = user_id_error(&change.user_id) {
        check.fail("user_id", reason);
    }
    match change.op {
        DirectoryOp::Unknown => check.fail(
            "op",
            "unknown operation: put_user, patch_user, delete_user, put_device, remove_device, set_preferences or deactivate_token",
        ),
        DirectoryOp::PutUser | DirectoryOp::PatchUser => match &change.user {
            Some(fields) => user_fields(&mut check, fields, change.op == DirectoryOp::PatchUser),
            None => check.fail("user", format!("{} needs the user's fields", change.op.as_str())),
        },
        DirectoryOp::DeleteUser => {}
        DirectoryOp::PutDevice => match &change.device {
            Some(device) => {
                device_id(&mut check, device.device_id.as_deref());
                token(&mut check, device.platform.as_deref(), device.token.as_deref());
                if let Some(app_id) = &device.app_id {
                    check.name("device.app_id", app_id, MAX_NAME);
                }
            }
            None => check.fail("device", "put_device needs the device"),
        },
        DirectoryOp::RemoveDevice => match &change.device {
            Some(device) => device_id(&mut check, device.device_id.as_deref()),
            None => check.fail("device", "remove_device needs the device's device_id"),
        },
        DirectoryOp::DeactivateToken => match &change.device {
            Some(device) => token(&mut check, device.platform.as_deref(), device.token.as_deref()),
            None => check.fail("device", "deactivate_token needs the device's platform and token"),
        },
        DirectoryOp::SetPreferences => {
            if change.preferences.is_empty() || change.preferences.len() > MAX_PREFERENCES {
                check.fail("preferences", format!("1 to {MAX_PREFERENCES} preferences"));
            }
            for (i, preference) in change.preferences.iter().enumerate() {
                check.name(&format!("preferences[{i}].category"), &preference.category, MAX_NAME);
                if !RequestedChannel::is_name(&preference.channel) {
                    check.fail(
                        format!("preferences[{i}].channel"),
                        format!("unknown channel {:?}: use email, sms or push", preference.channel),
                    );
                }
            }
        }
    }
    check.errors
}

fn user_fields(check: &mut Checker, fields: &UserFields, patch: bool) {
    if let Some(email) = &fields.email
        && let Some(reason) = targets::email_error(email)
    {
        check.fail("user.email", reason);
    }
    if let Some(phone) = &fields.phone
        && let Some(reason) = targets::phone_number_error(phone)
    {
        check.fail("user.phone", reason);
    }
    if let Some(locale) = fields.locale.as_deref().filter(|l| !is_locale(l)) {
        check.fail("user.locale", format!("{locale:?} is not a BCP 47 language tag (e.g. ko-KR)"));
    }
    if let Some(zone) = fields.timezone.as_deref().filter(|z| !quiet::is_known_timezone(z)) {
        check.fail("user.timezone", format!("{zone:?} is not an IANA time zone (e.g. Asia/Seoul)"));
    }
    if let Some(region) = &fields.region
        && (region.is_empty()
            || region.len() > 16
            || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        check.fail("user.region", "must be a region code such as US or CN (letters, digits, -)");
    }
    if let Some(window) = &fields.quiet_hours
        && let Err(reason) = QuietHours::parse(window)
    {
        check.fail("user.quiet_hours", reason);
    }
    if !patch && !fields.unset.is_empty() {
        check.fail("user.unset", "only patch_user clears fields; put_user sets them all");
    }
    for name in &fields.unset {
        if !UserFields::NAMES.contains(&name.as_str()) {
            check.fail("user.unset", format!("{name:?} is not a user field"));
        } else if user_field(fields, name).is_some() {
            check.fail("user.unset", format!("{name:?} is both set and cleared"));
        }
    }
}

fn user_field<'u>(fields: &'u UserFields, name: &str) -> Option<&'u String> {
    match name {
        "email" => fields.email.as_ref(),
        "phone" => fields.phone.as_ref(),
        "locale" => fields.locale.as_ref(),
        "timezone" => fields.timezone.as_ref(),
        "region" => fields.region.as_ref(),
        "quiet_hours" => fields.quiet_hours.as_ref(),
        _ => None,
    }
}

fn device_id(check: &mut Checker, device_id: Option<&str>) {
    match device_id {
        Some(id) => check.name("device.device_id", id, MAX_NAME),
        None => check.fail("device.device_id", "required"),
    }
}

fn token(check: &mut Checker, platform: Option<&str>, token: Option<&str>) {
    match (platform, token) {
        (Some(platform), Some(token)) => {
            if let Some(reason) = targets::device_token_error(platform, token) {
                let field = if reason.starts_with("unknown platform") {
                    "device.platform"
                } else {
                    "device.token"
                };
                check.fail(field, reason);
            }
        }
        (platform, token) => {
            if platform.is_none() {
                check.fail("device.platform", "required: ios or android");
            }
            if token.is_none() {
                check.fail("device.token", "required");
            }
        }
    }
}

/// A `put_user`'s user, or a `patch_user` laid over `current`.
pub fn user_after(user_id: &str, fields: &UserFields, current: Option<User>) -> User {
    let mut user =
        current.unwrap_or_else(|| User { user_id: user_id.to_owned(), ..User::default() });
    let set = |slot: &mut Option<String>, value: &Option<String>| {
        if value.is_some() {
            slot.clone_from(value);
        }
    };
    set(&mut user.email, &fields.email);
    set(&mut user.phone, &fields.phone);
    set(&mut user.locale, &fields.locale);
    set(&mut user.timezone, &fields.timezone);
    set(&mut user.region, &fields.region);
    set(&mut user.quiet_hours, &fields.quiet_hours);
    for name in &fields.unset {
        let slot = match name.as_str() {
            "email" => &mut user.email,
            "phone" => &mut user.phone,
            "locale" => &mut user.locale,
            "timezone" => &mut user.timezone,
            "region" => &mut user.region,
            "quiet_hours" => &mut user.quiet_hours,
            _ => continue,
        };
        *slot = None;
    }
    user
}

/// A user's fields as a `put_user` sets them: every field, absent ones cleared.
pub fn put_user_fields(user: &User) -> UserFields {
    UserFields {
        email: user.email.clone(),
        phone: user.phone.clone(),
        locale: user.locale.clone(),
        timezone: user.timezone.clone(),
        region: user.region.clone(),
        quiet_hours: user.quiet_hours.clone(),
        unset: Vec::new(),
    }
}

/// The device a checked `put_device` registers.
pub fn device_of(fields: &herald_schemas::DeviceFields) -> Option<Device> {
    Some(Device {
        device_id: fields.device_id.clone()?,
        platform: fields.platform.as_deref()?.parse::<Platform>().ok()?,
        token: fields.token.clone()?,
        app_id: fields.app_id.clone(),
        active: fields.active,
    })
}

/// The preferences a checked `set_preferences` sets.
pub fn preferences_of(change: &DirectoryChange) -> Vec<Preference> {
    change
        .preferences
        .iter()
        .map(|p| Preference {
            category: p.category.clone(),
            channel: p.channel.clone(),
            opted_in: p.opted_in,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_schemas::{DeviceFields, PreferenceFields};

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn every_failed_rule_of_a_change_names_its_field() {
        let mut change = DirectoryChange::new("42", DirectoryOp::PutUser);
        change.user = Some(UserFields {
            email: Some("not an address".into()),
            phone: Some("555".into()),
            locale: Some("k".into()),
            timezone: Some("Mars/Base".into()),
            region: Some("U S".into()),
            quiet_hours: Some("22-07".into()),
            unset: vec!["email".into()],
        });
        assert_eq!(
            fields(&check(&change)),
            [
                "user.email",
                "user.phone",
                "user.locale",
                "user.timezone",
                "user.region",
                "user.quiet_hours",
                "user.unset",
                "user.unset"
            ]
        );
        let mut device = DirectoryChange::new("", DirectoryOp::PutDevice);
        device.device = Some(DeviceFields {
            platform: Some("ios".into()),
            token: Some("xyz".into()),
            ..DeviceFields::default()
        });
        assert_eq!(fields(&check(&device)), ["user_id", "device.device_id", "device.token"]);
        let mut preferences = DirectoryChange::new("42", DirectoryOp::SetPreferences);
        preferences.preferences = vec![PreferenceFields {
            category: "marketing".into(),
            channel: "fax".into(),
            opted_in: false,
        }];
        assert_eq!(fields(&check(&preferences)), ["preferences[0].channel"]);
        assert_eq!(fields(&check(&DirectoryChange::new("42", DirectoryOp::Unknown))), ["op"]);
        assert!(check(&DirectoryChange::new("42", DirectoryOp::DeleteUser)).is_empty());
    }

    #[test]
    fn a_patch_sets_what_it_names_and_clears_what_it_unsets() {
        let current = User {
            user_id: "42".into(),
            email: Some("old@example.com".into()),
            phone: Some("+14155550100".into()),
            locale: Some("en-US".into()),
            ..User::default()
        };
        let patch = UserFields {
            email: Some("new@example.com".into()),
            unset: vec!["phone".into()],
            ..UserFields::default()
        };
        let after = user_after("42", &patch, Some(current));
        assert_eq!(after.email.as_deref(), Some("new@example.com"));
        assert_eq!(after.phone, None);
        assert_eq!(after.locale.as_deref(), Some("en-US"), "untouched");
    }
}
