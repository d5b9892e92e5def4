//! Rendering a request's stored template into inline content, per channel, in the best
//! locale the template has. Pure apart from the template engine: the caller fetched the
//! variants, so every rule is tested directly.

use std::collections::BTreeMap;

use herald_schemas::{
    EmailContent, NotificationRequest, PushContent, RequestedChannel, SmsContent,
};
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;

use crate::directory::{TemplateVariant, User};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("template {0:?} does not exist")]
    UnknownTemplate(String),
    #[error("template {id:?} ({channel}, locale {locale:?}) failed to render: {reason}")]
    Render { id: String, channel: String, locale: String, reason: String },
    #[error("template {id:?} ({channel}, locale {locale:?}) has no {field}")]
    Incomplete { id: String, channel: String, locale: String, field: &'static str },
    #[error("template {id:?}: unknown channel {channel:?} (use email, sms or push)")]
    UnknownChannel { id: String, channel: String },
}

impl RenderError {
    /// The `reason` of the `failed` event: bounded, for metrics and status.
    pub fn reason(&self) -> &'static str {
        match self {
            RenderError::UnknownTemplate(_) => "unknown_template",
            RenderError::Render { .. }
            | RenderError::Incomplete { .. }
            | RenderError::UnknownChannel { .. } => "template_error",
        }
    }
}

/// The template engine, configured once: a variable the template uses but the request does
/// not give is an error for that notification, never an empty string in a user's message.
#[derive(Debug)]
pub struct Renderer {
    env: Environment<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        Self { env }
    }
}

/// `ko-KR` → `ko-KR`, `ko`, then the default (empty) locale.
pub fn locale_chain(wanted: Option<&str>) -> Vec<String> {
    let mut chain = Vec::new();
    if let Some(tag) = wanted.filter(|t| !t.is_empty()) {
        let mut tag = tag.to_ascii_lowercase();
        loop {
            chain.push(tag.clone());
            match tag.rfind('-') {
                Some(i) => tag.truncate(i),
                None => break,
            }
        }
    }
    chain.push(String::new());
    chain
}

#[derive(Serialize)]
struct UserView<'a> {
    id: &'a str,
    email: Option<&'a str>,
    phone: Option<&'a str>,
    locale: Option<&'a str>,
}

impl Renderer {
    /// The variables every variant of a template uses (besides `user`, which the enricher
    /// fills in): a request without one of them fails whichever variant is chosen, so the
    /// send API can refuse it at once. A variable only some variants use is left to the
    /// enricher, which knows the variant.
    pub fn required_variables(&self, variants: &[TemplateVariant]) -> Vec<String> {
        let used = |variant: &TemplateVariant| -> std::collections::BTreeSet<String> {
            let parts =
                [&variant.subject, &variant.title, &Some(variant.body.clone()), &variant.html];
            parts
                .into_iter()
                .flatten()
                .filter_map(|source| self.env.template_from_str(source).ok())
                .flat_map(|template| template.undeclared_variables(false))
                .filter(|name| name != "user")
                .collect()
        };
        let mut variants = variants.iter();
        let Some(first) = variants.next() else { return Vec::new() };
        let all =
            variants.fold(used(first), |all, v| all.intersection(&used(v)).cloned().collect());
        all.into_iter().collect()
    }

    /// Whether `variant` can be rendered at all: a known channel, the parts that channel needs,
    /// and texts that parse. An import refuses a broken template up front instead of failing
    /// every notification that uses it.
    pub fn check(&self, variant: &TemplateVariant) -> Result<(), RenderError> {
        let id = || variant.template_id.clone();
        if !RequestedChannel::is_name(&variant.channel) {
            return Err(RenderError::UnknownChannel { id: id(), channel: variant.channel.clone() });
        }
        if variant.channel == "email" && variant.subject.is_none() {
            return Err(RenderError::Incomplete {
                id: id(),
                channel: variant.channel.clone(),
                locale: variant.locale.clone(),
                field: "subject",
            });
        }
        let parts = [&variant.subject, &variant.title, &Some(variant.body.clone()), &variant.html];
        for source in parts.into_iter().flatten() {
            self.env.template_from_str(source).map_err(|e| RenderError::Render {
                id: id(),
                channel: variant.channel.clone(),
                locale: variant.locale.clone(),
                reason: describe(&e),
            })?;
        }
        Ok(())
    }

    /// Fills `request`'s email, SMS and push content from its template: for each channel the
    /// template has (or only those requested), the variant of the best matching locale.
    /// Variables are the request's `data` plus `user` (id, email, phone, locale).
    pub fn render(
        &self,
        request: &mut NotificationRequest,
        variants: &[TemplateVariant],
        user: Option<&User>,
    ) -> Result<(), RenderError> {
        let Some(template) = request.template.as_ref() else { return Ok(()) };
        if variants.is_empty() {
            return Err(RenderError::UnknownTemplate(template.id.clone()));
        }
        let wanted = template.locale.as_deref().or(user.and_then(|u| u.locale.as_deref()));
        let chain = locale_chain(wanted);
        let mut context: BTreeMap<&str, Value> =
            template.data.iter().map(|(k, v)| (k.as_str(), Value::from(v.as_str()))).collect();
        if let Some(user) = user {
            context.insert(
                "user",
                Value::from_serialize(UserView {
                    id: &user.user_id,
                    email: user.email.as_deref(),
                    phone: user.phone.as_deref(),
                    locale: user.locale.as_deref(),
                }),
            );
        }
        let context_names: std::collections::BTreeSet<&str> = context.keys().copied().collect();
        let context = Value::from(context);
        let requested = |channel: &str| {
            request.channels.is_empty() || request.channels.iter().any(|c| c == channel)
        };
        let mut rendered = (None, None, None);
        for channel in RequestedChannel::ALL.map(RequestedChannel::as_str) {
            if !requested(channel) {
                continue;
            }
            let best = chain.iter().find_map(|locale| {
                variants
                    .iter()
                    .find(|v| v.channel == channel && v.locale.eq_ignore_ascii_case(locale))
            });
            let Some(variant) = best else { continue };
            let text = |part: &str, source: &str| {
                let failed = |reason: String| RenderError::Render {
                    id: variant.template_id.clone(),
                    channel: channel.to_owned(),
                    locale: variant.locale.clone(),
                    reason,
                };
                // A `.html` name turns on HTML escaping of the variables.
                let name = format!("{}.{channel}.{part}", variant.template_id);
                let template = self
                    .env
                    .template_from_named_str(&name, source)
                    .map_err(|e| failed(describe(&e)))?;
                // Named up front: the engine's own error says only "undefined value".
                let mut missing: Vec<String> = template
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|v| !context_names.contains(v.as_str()))
                    .collect();
                if !missing.is_empty() {
                    missing.sort();
                    return Err(failed(format!("missing variables: {}", missing.join(", "))));
                }
                template.render(&context).map_err(|e| failed(describe(&e)))
            };
            let optional = |part: &str, source: &Option<String>| {
                source.as_deref().map(|s| text(part, s)).transpose()
            };
            match channel {
                "email" => {
                    let subject = variant.subject.as_deref().ok_or(RenderError::Incomplete {
                        id: variant.template_id.clone(),
                        channel: channel.to_owned(),
                        locale: variant.locale.clone(),
                        field: "subject",
                    })?;
                    rendered.0 = Some(EmailContent {
                        subject: text("subject", subject)?,
                        text: Some(text("txt", &variant.body)?),
                        html: optional("html", &variant.html)?,
                    });
                }
                "sms" => rendered.1 = Some(SmsContent { text: text("txt", &variant.body)? }),
                _ => {
                    rendered.2 = Some(PushContent {
                        title: optional("title", &variant.title)?,
                        body: text("body", &variant.body)?,
                        data: BTreeMap::new(),
                    });
                }
            }
        }
        (request.email, request.sms, request.push) = rendered;
        Ok(())
    }
}

/// The engine's message with its cause (e.g. which variable is undefined), on one line.
fn describe(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use herald_schemas::TemplateRef;

    use super::*;

    fn variant(locale: &str, channel: &str, body: &str) -> TemplateVariant {
        TemplateVariant {
            template_id: "otp".into(),
            locale: locale.into(),
            channel: channel.into(),
            subject: (channel == "email").then(|| "Code for {{ user.id }}".into()),
            title: (channel == "push").then(|| "Code".into()),
            body: body.into(),
            html: (channel == "email").then(|| "<p>{{ code }}</p>".into()),
        }
    }

    fn request(locale: Option<&str>, data: &[(&str, &str)]) -> NotificationRequest {
        NotificationRequest {
            template: Some(TemplateRef {
                id: "otp".into(),
                locale: locale.map(Into::into),
                data: data.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            }),
            ..NotificationRequest::default()
        }
    }

    fn user(locale: Option<&str>) -> User {
        User {
            user_id: "u1".into(),
            email: None,
            phone: None,
            locale: locale.map(Into::into),
            timezone: None,
            region: None,
            quiet_hours: None,
        }
    }

    #[test]
    fn locale_falls_back_from_region_to_language_to_default() {
        assert_eq!(locale_chain(Some("ko-KR")), vec!["ko-kr", "ko", ""]);
        assert_eq!(locale_chain(Some("zh-Hant-TW")), vec!["zh-hant-tw", "zh-hant", "zh", ""]);
        assert_eq!(locale_chain(None), vec![""]);

        let variants = [
            variant("", "sms", "Your code is {{ code }}"),
            variant("ko", "sms", "인증 코드: {{ code }}"),
            variant("ko-KR", "push", "코드 {{ code }}"),
        ];
        let renderer = Renderer::default();
        let mut korean = request(None, &[("code", "123456")]);
        renderer.render(&mut korean, &variants, Some(&user(Some("ko-KR")))).unwrap();
        assert_eq!(korean.sms.unwrap().text, "인증 코드: 123456", "ko-KR → ko");
        assert_eq!(korean.push.unwrap().body, "코드 123456", "exact match");
        assert!(korean.email.is_none(), "the template has no email");

        let mut french = request(Some("fr-FR"), &[("code", "9")]);
        renderer.render(&mut french, &variants, Some(&user(Some("ko-KR")))).unwrap();
        assert_eq!(french.sms.unwrap().text, "Your code is 9", "request locale wins, then default");
    }

    #[test]
    fn only_requested_channels_are_rendered_and_html_is_escaped() {
        let variants = [variant("", "sms", "{{ code }}"), variant("", "email", "Code {{ code }}")];
        let mut r = request(None, &[("code", "<b>1</b>")]);
        r.channels = vec!["email".into()];
        Renderer::default().render(&mut r, &variants, Some(&user(None))).unwrap();
        assert!(r.sms.is_none());
        let email = r.email.unwrap();
        assert_eq!(email.subject, "Code for u1");
        assert_eq!(email.text.as_deref(), Some("Code <b>1</b>"));
        assert_eq!(email.html.as_deref(), Some("<p>&lt;b&gt;1&lt;&#x2f;b&gt;</p>"));
    }

    #[test]
    fn the_variables_every_variant_uses_are_required_and_user_is_not() {
        let renderer = Renderer::default();
        let variants = [
            variant("", "sms", "Code {{ code }} for {{ user.id }}"),
            variant("ko", "sms", "{{ code }} {{ name }}"),
        ];
        assert_eq!(renderer.required_variables(&variants), ["code"]);
        assert!(renderer.required_variables(&[]).is_empty());
    }

    #[test]
    fn a_missing_variable_or_template_is_an_error_not_an_empty_string() {
        let renderer = Renderer::default();
        let mut r = request(None, &[]);
        let e =
            renderer.render(&mut r, &[variant("", "sms", "Code {{ code }}")], None).unwrap_err();
        assert_eq!(e.reason(), "template_error");
        assert!(e.to_string().contains("missing variables: code"), "{e}");
        let mut r = request(None, &[("user", "not an object")]);
        let nested = variant("", "sms", "{{ user.name }}");
        let e = renderer.render(&mut r, &[nested], None).unwrap_err();
        assert!(e.to_string().contains("undefined"), "strict beyond the top level: {e}");
        let mut r = request(None, &[]);
        let e = renderer.render(&mut r, &[], None).unwrap_err();
        assert_eq!(e, RenderError::UnknownTemplate("otp".into()));
        let mut no_subject = variant("", "email", "x");
        no_subject.subject = None;
        let e = renderer.render(&mut request(None, &[]), &[no_subject.clone()], None).unwrap_err();
        assert!(matches!(e, RenderError::Incomplete { field: "subject", .. }), "{e}");
        assert!(renderer.check(&no_subject).is_err(), "an import refuses it too");
    }

    #[test]
    fn check_refuses_broken_syntax_and_unknown_channels() {
        let renderer = Renderer::default();
        assert_eq!(renderer.check(&variant("", "sms", "Code {{ code }}")), Ok(()));
        let e = renderer.check(&variant("", "sms", "Code {{ code")).unwrap_err();
        assert!(e.to_string().contains("syntax"), "{e}");
        let e = renderer.check(&variant("", "fax", "x")).unwrap_err();
        assert!(matches!(e, RenderError::UnknownChannel { .. }), "{e}");
    }
}
