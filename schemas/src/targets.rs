//! What a delivery target must be, wherever a request comes from (the send API, a service
//! producing Avro directly, an imported directory): an email address, a phone number its
//! country's numbering plan assigns, a push token of its platform. The send API refuses a
//! request with a bad one (422); the enricher fails that delivery with the reason instead of
//! handing it to a provider.

/// Why `value` is not an email address, if it is not.
pub fn email_error(value: &str) -> Option<String> {
    value
        .parse::<email_address::EmailAddress>()
        .err()
        .map(|e| format!("not a valid email address: {e}"))
}

/// Why `token` cannot be a push token of `platform`, if it cannot.
pub fn device_token_error(platform: &str, token: &str) -> Option<String> {
    match platform {
        // APNs tokens are 32 bytes in hex today; Apple says they may grow.
        "ios" => (!(64..=200).contains(&token.len())
            || !token.len().is_multiple_of(2)
            || !token.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| "an APNs device token is hex, 64 to 200 digits".into()),
        // FCM registration tokens, JPush registration ids and Pushy tokens share this alphabet.
        "android" => (!(8..=4_096).contains(&token.len())
            || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b)))
        .then(|| {
            "an Android push token (FCM, JPush, Pushy) is 8 to 4096 of A-Z a-z 0-9 - _ : .".into()
        }),
        other => Some(format!("unknown platform {other:?}: use ios or android")),
    }
}

/// Why `value` is not a phone number Herald can text, if it is not: it must be written in
/// E.164, start with a calling code some country has, and be a number that country's
/// numbering plan assigns (libphonenumber's metadata, through the `phonenumber` crate). A
/// mistyped number is refused with the request, not by the SMS provider after the 202.
pub fn phone_number_error(value: &str) -> Option<String> {
    if !is_e164(value) {
        return Some("not an E.164 phone number (+ then 8 to 15 digits, e.g. +14155550100)".into());
    }
    let number = match phonenumber::parse(None, value) {
        Ok(number) => number,
        Err(e) => return Some(format!("not a phone number: {e}")),
    };
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    if e164 != value {
        return Some(format!("not written in E.164: {e164} is the same number"));
    }
    if !phonenumber::is_valid(&number) {
        let plan = number.country().id().map_or_else(
            || format!("+{}", number.code().value()),
            |region| region.as_ref().to_owned(),
        );
        return Some(format!("not a number the numbering plan of {plan} assigns"));
    }
    None
}

/// Loads the numbering plans [`phone_number_error`] checks against (about 80 ms), so that
/// the first request with a phone number does not wait for it.
pub fn load_numbering_plans() {
    let _ = phone_number_error("+14155550100");
}

/// `+`, a non-zero country code digit, 8 to 15 digits in all (ITU-T E.164): the syntax
/// alone; [`phone_number_error`] also checks the number against its country's plan.
pub fn is_e164(value: &str) -> bool {
    let Some(digits) = value.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        assert!(is_e164("+14155550100"));
        assert!(is_e164("+821012345678"));
        assert!(!is_e164("14155550100"));
        assert!(!is_e164("+0155550100"));
        assert!(!is_e164("+1415555010a"));
        assert!(!is_e164("+1234567"));
    }

    #[test]
    fn a_phone_number_is_checked_against_its_countrys_numbering_plan() {
        for valid in ["+14155550100", "+821012345678", "+8613800138000", "+447911123456"] {
            assert_eq!(phone_number_error(valid), None, "{valid}");
        }
        let refused = |value: &str| phone_number_error(value).unwrap_or_default();
        assert!(refused("14155550100").contains("E.164"));
        assert!(refused("+15551234567").contains("numbering plan of +1"), "no area code 555");
        assert!(refused("+861380013800").contains("numbering plan of CN"), "a digit short");
        assert!(refused("+999123456789").contains("invalid country code"));
        assert_eq!(
            refused("+8201012345678"),
            "not written in E.164: +821012345678 is the same number",
            "the national prefix 0 does not belong after the country code"
        );
    }

    #[test]
    fn device_tokens_are_checked_per_platform() {
        assert_eq!(device_token_error("ios", &"ab".repeat(32)), None);
        assert!(device_token_error("ios", "not-hex").is_some());
        assert_eq!(device_token_error("android", "fcm-token:APA91b"), None);
        assert!(device_token_error("android", "short").is_some());
        assert!(
            device_token_error("web", "anything-long")
                .unwrap_or_default()
                .contains("unknown platform")
        );
        assert!(email_error("someone@example.com").is_none());
        assert!(email_error("not an address").is_some());
    }
}
