//! How many SMS parts a text costs, from 3GPP TS 23.038 (the GSM 7-bit default alphabet and
//! its extension table) and the providers' published part sizes: 160 septets alone or 153 a
//! part once concatenated; else UCS-2, 70 UTF-16 units alone or 67 a part. Written from the
//! standard, not from the dispatcher's counting, so that a bug there shows here.

/// The default alphabet by septet value, 0x00 to 0x7F (0x1B is the escape to the extension
/// table and stands for no character of its own).
const DEFAULT_ALPHABET: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table's characters (escape + one septet each): form feed, `^ { } \ [ ~ ] |`
/// and the euro sign.
const EXTENSION: [char; 10] = ['\u{c}', '^', '{', '}', '\\', '[', '~', ']', '|', '€'];

/// Whether `text` needs UCS-2, and how many parts it is sent as.
pub(crate) fn parts(text: &str) -> (bool, usize) {
    let mut septets = 0usize;
    for c in text.chars() {
        if c != '\u{1b}' && DEFAULT_ALPHABET.contains(&c) {
            septets += 1;
        } else if EXTENSION.contains(&c) {
            septets += 2;
        } else {
            let units = text.encode_utf16().count();
            return (true, if units <= 70 { 1 } else { units.div_ceil(67) });
        }
    }
    (false, if septets <= 160 { 1 } else { septets.div_ceil(153) })
}

#[cfg(test)]
mod tests {
    use super::parts;

    #[test]
    fn texts_cost_the_parts_the_standard_says() {
        assert_eq!(parts(&"a".repeat(160)), (false, 1));
        assert_eq!(parts(&"a".repeat(161)), (false, 2));
        assert_eq!(parts(&"€".repeat(80)), (false, 1), "two septets each");
        assert_eq!(parts(&"€".repeat(81)), (false, 2));
        assert_eq!(parts(&"ж".repeat(70)), (true, 1));
        assert_eq!(parts(&"ж".repeat(71)), (true, 2));
        assert_eq!(parts(&"😀".repeat(35)), (true, 1), "two UTF-16 units each");
    }
}
