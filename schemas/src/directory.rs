//! Changes to the directory (users, devices, preferences) as they travel on
//! `herald.directory.changes`: written by the directory API, `herald directory import`, the
//! enricher itself (a token that moved, a token a provider reported dead) and any service
//! that produces them, and applied by the enricher, which owns the directory.

use serde::{Deserialize, Serialize};

use crate::records::{Record, record};

/// What a [`DirectoryChange`] does; see `schemas/avro/directory_change.avsc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryOp {
    /// What an older reader sees for an operation added after it was built.
    Unknown,
    PutUser,
    PatchUser,
    DeleteUser,
    PutDevice,
    RemoveDevice,
    SetPreferences,
    DeactivateToken,
}

impl DirectoryOp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::PutUser => "put_user",
            Self::PatchUser => "patch_user",
            Self::DeleteUser => "delete_user",
            Self::PutDevice => "put_device",
            Self::RemoveDevice => "remove_device",
            Self::SetPreferences => "set_preferences",
            Self::DeactivateToken => "deactivate_token",
        }
    }
}

/// A user's contact fields; `unset` names the fields a `patch_user` clears.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFields {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub region: Option<String>,
    pub quiet_hours: Option<String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

impl UserFields {
    /// The names of the fields, as `unset` takes them.
    pub const NAMES: [&'static str; 6] =
        ["email", "phone", "locale", "timezone", "region", "quiet_hours"];
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFields {
    pub device_id: Option<String>,
    pub platform: Option<String>,
    pub token: Option<String>,
    pub app_id: Option<String>,
    #[serde(default = "active")]
    pub active: bool,
}

fn active() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferenceFields {
    pub category: String,
    pub channel: String,
    pub opted_in: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryChange {
    pub user_id: String,
    pub op: DirectoryOp,
    pub changed_at: i64,
    #[serde(default)]
    pub change_id: Option<String>,
    #[serde(default)]
    pub user: Option<UserFields>,
    #[serde(default)]
    pub device: Option<DeviceFields>,
    #[serde(default)]
    pub preferences: Vec<PreferenceFields>,
}
record!(DirectoryChange, "directory_change.avsc");

impl DirectoryChange {
    /// A change of `op` to `user_id` made now, with a fresh change id; the caller fills in
    /// its fields.
    pub fn new(user_id: &str, op: DirectoryOp) -> Self {
        Self {
            user_id: user_id.to_owned(),
            op,
            changed_at: crate::now_millis(),
            change_id: Some(crate::records::uuid_like_id()),
            user: None,
            device: None,
            preferences: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::round_trip;
    use apache_avro::Schema;

    #[test]
    fn directory_change_matches_its_schema() {
        let mut change = DirectoryChange::new("42", DirectoryOp::PatchUser);
        change.user = Some(UserFields {
            email: Some("ji@example.com".into()),
            unset: vec!["phone".into()],
            ..UserFields::default()
        });
        round_trip(&change);
        let mut device = DirectoryChange::new("42", DirectoryOp::PutDevice);
        device.device = Some(DeviceFields {
            device_id: Some("phone".into()),
            platform: Some("ios".into()),
            token: Some("ab".repeat(32)),
            app_id: None,
            active: true,
        });
        device.preferences = vec![PreferenceFields {
            category: "marketing".into(),
            channel: "sms".into(),
            opted_in: false,
        }];
        round_trip(&device);
    }

    #[test]
    fn every_directory_op_is_a_schema_symbol() {
        let Schema::Record(record) = DirectoryChange::schema() else { panic!("not a record") };
        let op = record.fields.iter().find(|f| f.name == "op").map(|f| &f.schema);
        let Some(Schema::Enum(e)) = op else { panic!("op is not an enum") };
        for symbol in &e.symbols {
            let parsed: DirectoryOp = serde_json::from_value(serde_json::json!(symbol))
                .unwrap_or_else(|_| panic!("{symbol} has no DirectoryOp"));
            assert_eq!(parsed.as_str(), symbol);
        }
    }
}
