//! What SMS providers share: how many parts a text costs, and the checks before sending.
//!
//! A text that fits the GSM 03.38 alphabet is sent 7 bits a character (160 in one SMS, 153 a
//! part once concatenated, since the header takes the rest; characters of the extension table
//! such as `€` or `{` take two). Any other character turns the whole text to UCS-2: 70 UTF-16
//! units in one SMS, 67 a part.

use herald_schemas::ChannelMessage;

use super::DeliveryError;
use serde::{Deserialize, Serialize};

/// The basic GSM 03.38 alphabet (one septet each).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table, reached through an escape septet (two septets each).
const GSM_EXTENDED: &str = "^{}\\[~]|€\u{c}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 units (UCS-2).
    pub units: usize,
    pub count: usize,
}

/// The encoding and the number of parts `text` is sent as.
pub fn segments(text: &str) -> Segments {
    let septets = text.chars().try_fold(0usize, |n, c| {
        if GSM_BASIC.contains(c) {
            Some(n + 1)
        } else if GSM_EXTENDED.contains(c) {
            Some(n + 2)
        } else {
            None
        }
    });
    let (encoding, units, single, part) = match septets {
        Some(septets) => (Encoding::Gsm7, septets, 160, 153),
        None => (Encoding::Ucs2, text.encode_utf16().count(), 70, 67),
    };
    let count = if units <= single { 1 } else { units.div_ceil(part) };
    Segments { encoding, units, count }
}

/// The text of an SMS message, checked against the configured maximum of parts.
pub fn checked_text<'m>(
    message: &'m ChannelMessage,
    options: &SmsOptions,
) -> Result<(&'m str, Segments), DeliveryError> {
    let text = message.sms.as_ref().map(|sms| sms.text.as_str()).ok_or_else(|| {
        DeliveryError::Invalid { reason: "channel message has no sms content".into() }
    })?;
    if text.is_empty() {
        return Err(DeliveryError::Permanent { reason: "the SMS text is empty".into() });
    }
    let parts = segments(text);
    if parts.count > options.max_segments as usize {
        let encoding = match parts.encoding {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        };
        return Err(DeliveryError::Permanent {
            reason: format!(
                "the SMS text needs {} parts ({} {encoding} units), above the configured maximum of {}",
                parts.count, parts.units, options.max_segments
            ),
        });
    }
    Ok((text, parts))
}

/// What both SMS providers need besides credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsOptions {
    /// Sender: an E.164 number or an alphanumeric sender id where the country allows one.
    pub from: String,
    /// Longer texts are refused (permanent failure) instead of billed as many parts.
    pub max_segments: u32,
}

impl Default for SmsOptions {
    fn default() -> Self {
        Self { from: String::new(), max_segments: 6 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm_texts_count_septets_with_extension_characters_double() {
        assert_eq!(segments("hello").count, 1);
        let full = "a".repeat(160);
        assert_eq!(segments(&full), Segments { encoding: Encoding::Gsm7, units: 160, count: 1 });
        assert_eq!(segments(&format!("{full}a")).count, 2, "161 septets: two parts of 153");
        assert_eq!(segments(&"a".repeat(306)).count, 2);
        assert_eq!(segments(&"a".repeat(307)).count, 3);
        let euros = "€".repeat(80);
        assert_eq!(segments(&euros).units, 160, "€ takes an escape and a septet");
        assert_eq!(segments(&format!("{euros}a")).count, 2);
        assert_eq!(segments("Ça coûte 5 €? Ñandú").encoding, Encoding::Ucs2, "û is not GSM");
        assert_eq!(segments("Ça côute").encoding, Encoding::Ucs2);
        assert_eq!(segments("Ça va, Müller? 5 € {ok}").encoding, Encoding::Gsm7);
    }

    #[test]
    fn any_other_character_makes_the_text_ucs2() {
        let korean = "안녕하세요".repeat(14);
        assert_eq!(segments(&korean), Segments { encoding: Encoding::Ucs2, units: 70, count: 1 });
        assert_eq!(segments(&format!("{korean}!")).count, 2);
        assert_eq!(segments(&"한".repeat(134)).count, 2);
        assert_eq!(segments(&"한".repeat(135)).count, 3);
        assert_eq!(segments("🎉").units, 2, "outside the BMP: a surrogate pair");
    }

    #[test]
    fn texts_over_the_configured_parts_are_refused() {
        let options = SmsOptions { from: "+15005550006".into(), max_segments: 2 };
        let mut message = crate::providers::tests_support::push_message("n", "+15551234567");
        message.sms = Some(herald_schemas::SmsContent { text: "a".repeat(306) });
        assert_eq!(checked_text(&message, &options).unwrap().1.count, 2);
        message.sms = Some(herald_schemas::SmsContent { text: "a".repeat(307) });
        let refused = checked_text(&message, &options).unwrap_err();
        assert!(
            matches!(&refused, DeliveryError::Permanent { reason } if reason.contains("3 parts"))
        );
        message.sms = None;
        assert!(matches!(checked_text(&message, &options), Err(DeliveryError::Invalid { .. })));
    }
}
