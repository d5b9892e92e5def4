//! Templates as `herald.templates` carries them: the whole template (every locale and
//! channel) as JSON, keyed by template id, so that the compacted topic's latest record of an
//! id is the template; a record without a value deletes it. The send API reads the
//! `variables` to refuse a request that lacks one; the enricher applies `variants` to its
//! store. A record without `variants` is an announcement of an id from before templates
//! travelled whole, and changes nothing in the store.

use serde::{Deserialize, Serialize};

use super::{FieldError, is_locale};
use crate::directory::TemplateVariant;
use crate::templates::Renderer;

/// The most variants (locales times channels) one template holds.
pub const MAX_VARIANTS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRecord {
    /// The variables every variant uses: a request must give them.
    pub variables: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<VariantRecord>>,
}

/// One locale's text of one channel. Texts are minijinja templates: `{{ code }}` is the
/// send's `data.code`, `{{ user.email }}` the recipient's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantRecord {
    /// BCP 47 (`ko`, `ko-KR`); empty for the default, used when no translation matches.
    #[serde(default)]
    pub locale: String,
    /// email, sms or push.
    #[schema(example = "sms")]
    pub channel: String,
    /// Email subject (required for email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Push title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Email text, SMS text or push body.
    #[schema(example = "Your code is {{ code }}")]
    pub body: String,
    /// Email HTML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

impl VariantRecord {
    pub fn of(template_id: &str, variant: VariantRecord) -> TemplateVariant {
        TemplateVariant {
            template_id: template_id.to_owned(),
            locale: variant.locale,
            channel: variant.channel,
            subject: variant.subject,
            title: variant.title,
            body: variant.body,
            html: variant.html,
        }
    }

    pub fn from_variant(variant: &TemplateVariant) -> Self {
        Self {
            locale: variant.locale.clone(),
            channel: variant.channel.clone(),
            subject: variant.subject.clone(),
            title: variant.title.clone(),
            body: variant.body.clone(),
            html: variant.html.clone(),
        }
    }
}

/// Whether `id` can name a template: 1 to 128 of A-Z a-z 0-9 - _ . : (as the send API
/// takes `template_id`).
pub fn template_id_error(id: &str) -> Option<&'static str> {
    let ok = (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    (!ok).then_some("must be 1 to 128 of A-Z a-z 0-9 - _ . :")
}

/// Why these variants cannot make template `id`, field by field (`variants[1].body`).
pub fn check(id: &str, variants: &[TemplateVariant], renderer: &Renderer) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut fail = |field: String, reason: String| errors.push(FieldError { field, reason });
    if let Some(reason) = template_id_error(id) {
        fail("template_id".into(), reason.into());
    }
    if variants.is_empty() || variants.len() > MAX_VARIANTS {
        fail("variants".into(), format!("1 to {MAX_VARIANTS} variants"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, variant) in variants.iter().enumerate() {
        if !variant.locale.is_empty() && !is_locale(&variant.locale) {
            let reason = format!(
                "{:?} is not a BCP 47 language tag (e.g. ko-KR), or empty for the default",
                variant.locale
            );
            fail(format!("variants[{i}].locale"), reason);
        }
        if !seen.insert((variant.locale.to_ascii_lowercase(), variant.channel.clone())) {
            let reason =
                format!("a second {} variant for locale {:?}", variant.channel, variant.locale);
            fail(format!("variants[{i}]"), reason);
        }
        if let Err(e) = renderer.check(variant) {
            let field = match &e {
                crate::templates::RenderError::UnknownChannel { .. } => "channel",
                crate::templates::RenderError::Incomplete { field, .. } => field,
                _ => "body",
            };
            fail(format!("variants[{i}].{field}"), e.to_string());
        }
    }
    errors
}

/// The record that makes `variants` the whole of template `id`.
pub fn record(variants: &[TemplateVariant], renderer: &Renderer) -> TemplateRecord {
    TemplateRecord {
        variables: renderer.required_variables(variants),
        variants: Some(variants.iter().map(VariantRecord::from_variant).collect()),
    }
}

/// A record's value read: `None` for an announcement without variants.
pub fn parse(id: &str, value: &[u8]) -> Result<Option<Vec<TemplateVariant>>, String> {
    let record: TemplateRecord =
        serde_json::from_slice(value).map_err(|e| format!("not a template record: {e}"))?;
    Ok(record
        .variants
        .map(|variants| variants.into_iter().map(|v| VariantRecord::of(id, v)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(locale: &str, channel: &str, body: &str) -> TemplateVariant {
        TemplateVariant {
            template_id: "otp".into(),
            locale: locale.into(),
            channel: channel.into(),
            subject: None,
            title: None,
            body: body.into(),
            html: None,
        }
    }

    #[test]
    fn a_template_travels_whole_and_reads_back() {
        let renderer = Renderer::default();
        let variants =
            vec![variant("", "sms", "Code {{ code }}"), variant("ko", "sms", "{{ code }}")];
        assert!(check("otp", &variants, &renderer).is_empty());
        let record = record(&variants, &renderer);
        assert_eq!(record.variables, ["code"]);
        let bytes = serde_json::to_vec(&record).unwrap();
        assert_eq!(parse("otp", &bytes).unwrap(), Some(variants));
        assert_eq!(parse("otp", br#"{"variables": ["code"]}"#).unwrap(), None, "an announcement");
        assert!(parse("otp", b"{nope").is_err());
    }

    #[test]
    fn broken_variants_are_refused_by_field() {
        let renderer = Renderer::default();
        let variants = vec![
            variant("", "sms", "{{ code"),
            variant("", "sms", "again"),
            variant("k", "fax", "x"),
            variant("", "email", "no subject"),
        ];
        let fields: Vec<String> =
            check("bad id!", &variants, &renderer).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "template_id",
                "variants[0].body",
                "variants[1]",
                "variants[2].locale",
                "variants[2].channel",
                "variants[3].subject"
            ]
        );
    }
}
