//! Demo users for `herald dev`.

use herald_enricher::directory::Directory;
use herald_enricher::{Device, DirectoryError, Platform, Preference, TemplateVariant, User};

/// (user id, what the banner says about it)
/// The demo template (`otp`: en, ko, zh).
pub const TEMPLATE_ID: &str = "otp";

pub const DEMO_USERS: [(&str, &str); 3] = [
    ("123456", "email, SMS and two devices"),
    ("234567", "opted out of marketing email"),
    ("345678", "SMS only, no email address"),
];

fn user(
    id: &str,
    email: Option<&str>,
    phone: &str,
    locale: &str,
    timezone: &str,
    region: &str,
) -> User {
    User {
        user_id: id.into(),
        email: email.map(Into::into),
        phone: Some(phone.into()),
        locale: Some(locale.into()),
        timezone: Some(timezone.into()),
        region: Some(region.into()),
        quiet_hours: None,
    }
}

/// The demo template `otp`: a sign-in code on every channel, in English (the default),
/// Korean and Chinese. Variables: `code`.
fn demo_templates() -> Vec<TemplateVariant> {
    let variant =
        |locale: &str, channel: &str, subject: Option<&str>, body: &str| TemplateVariant {
            template_id: TEMPLATE_ID.into(),
            locale: locale.into(),
            channel: channel.into(),
            subject: subject.map(Into::into),
            title: (channel == "push").then(|| "Herald".into()),
            body: body.into(),
            html: (channel == "email").then(|| format!("<p>{body}</p>")),
        };
    vec![
        variant("", "sms", None, "Your sign-in code is {{ code }}"),
        variant("", "push", None, "Your sign-in code is {{ code }}"),
        variant("", "email", Some("Your sign-in code"), "Your sign-in code is {{ code }}"),
        variant("ko", "sms", None, "인증 코드는 {{ code }}입니다"),
        variant("ko", "push", None, "인증 코드는 {{ code }}입니다"),
        variant("zh", "sms", None, "您的验证码是 {{ code }}"),
    ]
}

/// Adds the demo users unless they are there already, and the demo templates.
pub async fn demo_users<D: Directory>(directory: &D) -> Result<(), DirectoryError> {
    directory.put_template(TEMPLATE_ID, demo_templates()).await?;
    if directory.user(DEMO_USERS[0].0).await?.is_some() {
        return Ok(());
    }
    directory
        .upsert_user(user(
            "123456",
            Some("ada@example.com"),
            "+447400123456",
            "en-GB",
            "Europe/London",
            "GB",
        ))
        .await?;
    directory
        .upsert_device(
            "123456",
            Device {
                device_id: "ada-iphone".into(),
                platform: Platform::Ios,
                token: "a1".repeat(32),
                app_id: Some("com.example.app".into()),
                active: true,
            },
        )
        .await?;
    directory
        .upsert_device(
            "123456",
            Device {
                device_id: "ada-pixel".into(),
                platform: Platform::Android,
                token: "fcm-demo-token-ada-pixel".into(),
                app_id: Some("com.example.app".into()),
                active: true,
            },
        )
        .await?;
    directory
        .upsert_user(user(
            "234567",
            Some("grace@example.com"),
            "+14155550101",
            "en-US",
            "America/New_York",
            "US",
        ))
        .await?;
    directory
        .set_preference(
            "234567",
            Preference { category: "marketing".into(), channel: "email".into(), opted_in: false },
        )
        .await?;
    directory
        .upsert_user(user("345678", None, "+8613800138000", "zh-CN", "Asia/Shanghai", "CN"))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_demo_users_phone_numbers_are_ones_the_send_api_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let directory =
            herald_enricher::SqliteDirectory::open(dir.path().join("directory.db")).unwrap();
        demo_users(&directory).await.unwrap();
        for (id, _) in DEMO_USERS {
            let phone = directory.user(id).await.unwrap().unwrap().phone.unwrap();
            assert_eq!(herald_schemas::targets::phone_number_error(&phone), None, "{id}: {phone}");
        }
    }
}
