//! The files an operator loads into the directory (`herald directory import`): JSON lines,
//! one record tagged by its `kind` each, or CSV with a header row of the same field names.
//! A record is checked here (addresses, tokens, zones, quiet hours, template syntax) before
//! it is written, so a bad one is refused with its reason and costs only itself.

pub mod csv;

use serde::Deserialize;
use serde_json::Value;

use crate::quiet::{self, QuietHours};
use crate::templates::Renderer;
use crate::{Device, Platform, Preference, TemplateVariant, User};
use herald_schemas::{RequestedChannel, targets};

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    User {
        user_id: String,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        phone: Option<String>,
        #[serde(default)]
        locale: Option<String>,
        #[serde(default)]
        timezone: Option<String>,
        #[serde(default)]
        region: Option<String>,
        /// `HH:MM-HH:MM` in `timezone`.
        #[serde(default)]
        quiet_hours: Option<String>,
    },
    Device {
        user_id: String,
        device_id: String,
        platform: String,
        token: String,
        #[serde(default)]
        app_id: Option<String>,
        #[serde(default = "active_by_default")]
        active: bool,
    },
    Preference {
        user_id: String,
        category: String,
        channel: String,
        opted_in: bool,
    },
    Template {
        template_id: String,
        /// Empty or absent: the template's default, used when no translation matches.
        #[serde(default)]
        locale: String,
        channel: String,
        #[serde(default)]
        subject: Option<String>,
        #[serde(default)]
        title: Option<String>,
        body: String,
        #[serde(default)]
        html: Option<String>,
    },
}

fn active_by_default() -> bool {
    true
}

/// What one record of the file asks the directory to hold.
#[derive(Debug)]
pub enum Record {
    User(User),
    Device(String, Device),
    Preference(String, Preference),
    Template(TemplateVariant),
}

pub fn parse_json_line(line: &str, renderer: &Renderer) -> Result<Record, String> {
    let line: Line = serde_json::from_str(line).map_err(|e| e.to_string())?;
    check(line, renderer)
}

/// A record as the directory will hold it, once its addresses, tokens, zone and template
/// are valid.
fn check(line: Line, renderer: &Renderer) -> Result<Record, String> {
    match line {
        Line::User { user_id, email, phone, locale, timezone, region, quiet_hours } => {
            if user_id.is_empty() {
                return Err("user_id must not be empty".into());
            }
            if let Some(email) = &email
                && let Some(reason) = targets::email_error(email)
            {
                return Err(format!("email {email:?}: {reason}"));
            }
            if let Some(phone) = &phone
                && let Some(reason) = targets::phone_number_error(phone)
            {
                return Err(format!("phone {phone:?}: {reason}"));
            }
            if let Some(zone) = timezone.as_deref().filter(|z| !quiet::is_known_timezone(z)) {
                return Err(format!(
                    "timezone {zone:?} is not an IANA time zone (e.g. Asia/Seoul)"
                ));
            }
            if let Some(window) = &quiet_hours {
                QuietHours::parse(window)?;
            }
            Ok(Record::User(User { user_id, email, phone, locale, timezone, region, quiet_hours }))
        }
        Line::Device { user_id, device_id, platform, token, app_id, active } => {
            if let Some(reason) = targets::device_token_error(&platform, &token) {
                return Err(reason);
            }
            let platform: Platform = platform.parse()?;
            Ok(Record::Device(user_id, Device { device_id, platform, token, app_id, active }))
        }
        Line::Preference { user_id, category, channel, opted_in } => {
            if !RequestedChannel::is_name(&channel) {
                return Err(format!("unknown channel {channel:?}: use email, sms or push"));
            }
            Ok(Record::Preference(user_id, Preference { category, channel, opted_in }))
        }
        Line::Template { template_id, locale, channel, subject, title, body, html } => {
            let variant =
                TemplateVariant { template_id, locale, channel, subject, title, body, html };
            renderer.check(&variant).map_err(|e| e.to_string())?;
            Ok(Record::Template(variant))
        }
    }
}

/// A CSV row's fields (as [`csv::CsvRecords`] gives them) as a record.
pub fn from_fields(fields: Value, renderer: &Renderer) -> Result<Record, String> {
    let line: Line = serde_json::from_value(fields).map_err(|e| e.to_string())?;
    check(line, renderer)
}

impl Record {
    /// The key whose records must be written in the file's order: the user's, or the
    /// template's.
    pub fn key(&self) -> &str {
        match self {
            Self::User(user) => &user.user_id,
            Self::Device(user_id, _) | Self::Preference(user_id, _) => user_id,
            Self::Template(variant) => &variant.template_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: &str) -> String {
        match parse_json_line(line, &Renderer::default()) {
            Ok(_) => panic!("accepted {line}"),
            Err(reason) => reason,
        }
    }

    #[test]
    fn each_kind_is_checked_before_it_is_written() {
        let renderer = Renderer::default();
        for ok in [
            r#"{"kind":"user","user_id":"1","email":"a@example.com","phone":"+14155550100"}"#,
            r#"{"kind":"device","user_id":"1","device_id":"p","platform":"android","token":"fcm-token-1"}"#,
            r#"{"kind":"preference","user_id":"1","category":"marketing","channel":"sms","opted_in":false}"#,
            r#"{"kind":"template","template_id":"otp","channel":"sms","body":"{{ code }}"}"#,
        ] {
            assert!(parse_json_line(ok, &renderer).is_ok(), "{ok}");
        }
        assert!(refused(r#"{"kind":"user","user_id":"1","phone":"555"}"#).contains("E.164"));
        assert!(
            refused(r#"{"kind":"user","user_id":"1","timezone":"Mars/Base"}"#).contains("IANA")
        );
        assert!(
            refused(r#"{"kind":"user","user_id":"1","quiet_hours":"22-07"}"#).contains("HH:MM")
        );
        assert!(refused(r#"{"kind":"user","user_id":"1","email":"nope"}"#).contains("email"));
        assert!(
            refused(
                r#"{"kind":"device","user_id":"1","device_id":"p","platform":"ios","token":"xyz"}"#
            )
            .contains("hex")
        );
        assert!(
            refused(r#"{"kind":"template","template_id":"t","channel":"sms","body":"{{ x"}"#)
                .contains("syntax")
        );
        assert!(refused(r#"{"kind":"group","id":"1"}"#).contains("unknown variant"));
        assert!(refused(r#"{"kind":"user","user_id":"1","nick":"x"}"#).contains("unknown field"));
    }
}
