//! PII redaction: e-mail addresses, IPv4/IPv6 addresses, card numbers (Luhn-checked), tokens
//! (bearer, JWT, `key=value` secrets) and custom regexes, replaced by a mask or by a keyed hash
//! (HMAC-SHA256 with a configured key, so equal values still correlate).
//!
//! Replacements (`[REDACTED:<rule>]`, or `[<rule>#<letters a-p>]`) contain no digit, `@`, `.` or
//! `=`, so the built-in rules do not match their own output; [`Redactor::redact_str`] repeats
//! its pass until nothing changes (a few times at most) so text joined around a replacement
//! cannot form a new match either.
//! The rules apply to every string value of a document (keys are left alone). Nothing here is
//! specific to Elasticsearch: the local store can use the same [`Redactor`].

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// `[sink.elasticsearch.redaction]`. On by default with every built-in rule and the mask action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionConfig {
    /// Turns redaction on. Default `true`.
    pub enabled: bool,
    /// E-mail addresses. Default `true`.
    pub email: bool,
    /// IPv4 addresses. Default `true`.
    pub ipv4: bool,
    /// IPv6 addresses. Default `true`.
    pub ipv6: bool,
    /// Card numbers: 13-19 digits (spaces or dashes allowed) passing the Luhn check.
    /// Default `true`.
    pub card_numbers: bool,
    /// Bearer tokens, JWTs and `api_key=`/`token=`/`secret=`/`password=` values. Default `true`.
    pub tokens: bool,
    /// Extra rules: a name and a regex each.
    pub custom: Vec<CustomRule>,
    /// `mask` (default: `[REDACTED:<rule>]`) or `hash` (`[<rule>#<keyed hash>]`).
    pub action: RedactionAction,
    /// Key of the keyed hash; required (at least 16 bytes) with `action = "hash"`.
    pub hash_key: Option<String>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            email: true,
            ipv4: true,
            ipv6: true,
            card_numbers: true,
            tokens: true,
            custom: Vec::new(),
            action: RedactionAction::Mask,
            hash_key: None,
        }
    }
}

/// A custom redaction rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// Name shown in the replacement; lowercase letters and `_`.
    pub name: String,
    /// Regular expression (Rust `regex` syntax).
    pub pattern: String,
}

/// What replaces a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedactionAction {
    /// `[REDACTED:<rule>]`.
    Mask,
    /// `[<rule>#<first 64 bits of HMAC-SHA256, as letters a-p>]`.
    Hash,
}

const EMAIL: &str = r"(?i)[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}";
const IPV4: &str = r"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\b";
const IPV6: &str = r"(?i)(?:\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b|(?:\b[0-9a-f]{1,4}:){1,7}:(?:[0-9a-f]{1,4}\b(?::[0-9a-f]{1,4}\b){0,5})?|::(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4}\b)";
const CARD: &str = r"\b(?:[0-9][ \-]?){12,18}[0-9]\b";
const TOKEN: &str = r#"(?i)(?:\bbearer\s+[a-z0-9._~+/\-]+=*|\beyJ[a-z0-9_\-]+\.[a-z0-9_\-]+\.[a-z0-9_\-]*|\b(?:api[_\-]?key|access[_\-]?key|token|secret|password|passwd)\s*[=:]\s*[^\s&,;"']+)"#;

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    regex: Regex,
    luhn: bool,
}

/// Compiled redaction rules.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<Rule>,
    /// Every rule's pattern in one automaton: most text matches none, and one scan says so.
    any: Option<RegexSet>,
    hash_key: Option<Vec<u8>>,
}

impl RedactionConfig {
    /// Compiles the rules.
    ///
    /// # Errors
    /// `(field, problem)` for a bad custom regex, a bad rule name or a missing hash key.
    pub fn build(&self) -> Result<Redactor, (String, String)> {
        let mut rules = Vec::new();
        if self.enabled {
            let builtin = [
                (self.tokens, "token", TOKEN, false),
                (self.email, "email", EMAIL, false),
                (self.card_numbers, "card", CARD, true),
                (self.ipv6, "ipv6", IPV6, false),
                (self.ipv4, "ipv4", IPV4, false),
            ];
            for (on, name, pattern, luhn) in builtin {
                if on {
                    let regex = Regex::new(pattern)
                        .map_err(|err| (name.to_owned(), format!("built-in rule: {err}")))?;
                    rules.push(Rule {
                        name: name.to_owned(),
                        regex,
                        luhn,
                    });
                }
            }
            for (i, custom) in self.custom.iter().enumerate() {
                if custom.name.is_empty()
                    || !custom
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_')
                {
                    return Err((
                        format!("custom[{i}].name"),
                        "lowercase letters and `_` only".to_owned(),
                    ));
                }
                let regex = Regex::new(&custom.pattern)
                    .map_err(|err| (format!("custom[{i}].pattern"), err.to_string()))?;
                if regex.is_match("") {
                    return Err((
                        format!("custom[{i}].pattern"),
                        "must not match the empty string".to_owned(),
                    ));
                }
                rules.push(Rule {
                    name: custom.name.clone(),
                    regex,
                    luhn: false,
                });
            }
        }
        let hash_key = match self.action {
            RedactionAction::Mask => None,
            RedactionAction::Hash => match &self.hash_key {
                Some(key) if key.len() >= 16 => Some(key.as_bytes().to_vec()),
                _ => {
                    return Err((
                        "hash_key".to_owned(),
                        "at least 16 bytes are required with action = \"hash\"".to_owned(),
                    ));
                }
            },
        };
        let any = if rules.is_empty() {
            None
        } else {
            let set = RegexSet::new(rules.iter().map(|rule| rule.regex.as_str()))
                .map_err(|err| ("custom".to_owned(), format!("rules do not combine: {err}")))?;
            Some(set)
        };
        Ok(Redactor {
            rules,
            any,
            hash_key,
        })
    }
}

impl Default for Redactor {
    fn default() -> Self {
        // The built-in rules are constants covered by tests; an error here is impossible.
        RedactionConfig::default().build().unwrap_or(Redactor {
            rules: Vec::new(),
            any: None,
            hash_key: None,
        })
    }
}

/// Returns true when the digits of `text` pass the Luhn check (13 to 19 digits).
pub fn luhn_valid(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl Redactor {
    /// Returns true when no rule is active.
    pub fn is_noop(&self) -> bool {
        self.rules.is_empty()
    }

    fn replacement(&self, rule: &str, matched: &str) -> String {
        match &self.hash_key {
            None => format!("[REDACTED:{rule}]"),
            Some(key) => {
                let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
                    Ok(mac) => mac,
                    // HMAC takes keys of any length.
                    Err(_) => return format!("[REDACTED:{rule}]"),
                };
                mac.update(matched.as_bytes());
                let digest = mac.finalize().into_bytes();
                let letters: String = digest[..8]
                    .iter()
                    .flat_map(|b| [b >> 4, b & 0x0f])
                    .map(|n| char::from(b'a' + n))
                    .collect();
                format!("[{rule}#{letters}]")
            }
        }
    }

    fn pass<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for rule in &self.rules {
            if !rule.regex.is_match(&out) {
                continue;
            }
            let replaced = rule
                .regex
                .replace_all(&out, |caps: &regex::Captures<'_>| {
                    let matched = &caps[0];
                    if rule.luhn && !luhn_valid(matched) {
                        matched.to_owned()
                    } else {
                        self.replacement(&rule.name, matched)
                    }
                })
                .into_owned();
            out = Cow::Owned(replaced);
        }
        out
    }

    /// Returns `text` with every match of every rule replaced.
    pub fn redact_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.any {
            Some(any) if any.is_match(text) => {}
            _ => return Cow::Borrowed(text),
        }
        let mut current = self.pass(text);
        for _ in 0..4 {
            let next = self.pass(&current);
            if next == current {
                break;
            }
            current = Cow::Owned(next.into_owned());
        }
        current
    }

    /// Redacts every string value of `value` in place (object keys are left alone).
    pub fn redact_value(&self, value: &mut serde_json::Value) {
        if self.is_noop() {
            return;
        }
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(redacted) = self.redact_str(s) {
                    *s = redacted;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v)),
            _ => {}
        }
    }

    /// Returns true when some rule still matches `text` (cards only when Luhn-valid).
    pub fn finds_any(&self, text: &str) -> bool {
        self.rules.iter().any(|rule| {
            rule.regex
                .find_iter(text)
                .any(|m| !rule.luhn || luhn_valid(m.as_str()))
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hashing() -> Redactor {
        RedactionConfig {
            action: RedactionAction::Hash,
            hash_key: Some("0123456789abcdef-key".into()),
            custom: vec![CustomRule {
                name: "order".into(),
                pattern: r"ORD-[0-9]{6}".into(),
            }],
            ..RedactionConfig::default()
        }
        .build()
        .unwrap()
    }

    #[test]
    fn masks_each_builtin_kind() {
        let r = Redactor::default();
        let cases = [
            (
                "mail bob.smith+x@example.co.uk now",
                "mail [REDACTED:email] now",
            ),
            ("from 10.0.12.255 ok", "from [REDACTED:ipv4] ok"),
            ("v6 2001:db8::8a2e:370:7334 here", "v6 [REDACTED:ipv6] here"),
            ("v6 fe80:0:0:0:200:f8ff:fe21:67cf", "v6 [REDACTED:ipv6]"),
            ("card 4111 1111 1111 1111.", "card [REDACTED:card]."),
            (
                "Authorization: Bearer abc.def-ghi",
                "Authorization: [REDACTED:token]",
            ),
            ("url?api_key=s3cr3t&x=1", "url?[REDACTED:token]&x=1"),
        ];
        for (input, expected) in cases {
            assert_eq!(r.redact_str(input), expected, "{input}");
        }
    }

    #[test]
    fn leaves_non_luhn_numbers_and_times_alone() {
        let r = Redactor::default();
        assert_eq!(
            r.redact_str("order 1234567890123 at 12:30:45"),
            "order 1234567890123 at 12:30:45"
        );
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
    }

    #[test]
    fn keyed_hash_is_stable_and_key_dependent() {
        let a = hashing();
        let x = a.redact_str("user a@b.io and ORD-123456").into_owned();
        assert_eq!(x, a.redact_str("user a@b.io and ORD-123456"));
        assert!(
            x.starts_with("user [email#") && x.contains("[order#"),
            "{x}"
        );
        let other = RedactionConfig {
            action: RedactionAction::Hash,
            hash_key: Some("another-key-of-16-bytes".into()),
            ..RedactionConfig::default()
        }
        .build()
        .unwrap();
        assert_ne!(x, other.redact_str("user a@b.io and ORD-123456"));
    }

    #[test]
    fn config_errors_name_fields() {
        let bad_regex = RedactionConfig {
            custom: vec![CustomRule {
                name: "x".into(),
                pattern: "(".into(),
            }],
            ..RedactionConfig::default()
        };
        assert_eq!(bad_regex.build().unwrap_err().0, "custom[0].pattern");
        let no_key = RedactionConfig {
            action: RedactionAction::Hash,
            ..RedactionConfig::default()
        };
        assert_eq!(no_key.build().unwrap_err().0, "hash_key");
        let disabled = RedactionConfig {
            enabled: false,
            ..RedactionConfig::default()
        };
        assert!(disabled.build().unwrap().is_noop());
    }

    #[test]
    fn redacts_nested_values_but_not_keys() {
        let r = Redactor::default();
        let mut doc = serde_json::json!({"a@b.io": ["x 1.2.3.4"], "n": 5, "m": {"k": "c@d.org"}});
        r.redact_value(&mut doc);
        assert_eq!(
            doc,
            serde_json::json!({"a@b.io": ["x [REDACTED:ipv4]"], "n": 5, "m": {"k": "[REDACTED:email]"}})
        );
    }

    fn pii() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{1,8}(\\.[a-z]{1,5})?@[a-z]{1,8}\\.(com|org|io)",
            (0u8..=255, 0u8..=255, 0u8..=255, 0u8..=255)
                .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
            "[0-9a-f]{1,4}(:[0-9a-f]{1,4}){7}",
            "[0-9a-f]{1,4}::[0-9a-f]{1,4}",
            Just("4111-1111-1111-1111".to_owned()),
            Just("5500 0000 0000 0004".to_owned()),
            "Bearer [A-Za-z0-9]{8,20}",
            "eyJ[A-Za-z0-9]{4,10}\\.[A-Za-z0-9]{4,10}\\.[A-Za-z0-9]{4,10}",
            "(token|secret|api_key)=[a-z0-9]{4,12}",
            "ORD-[0-9]{6}",
        ]
    }

    fn text_with_pii() -> impl Strategy<Value = String> {
        prop::collection::vec(prop_oneof![pii(), "[ a-zA-Z0-9.:@=,;-]{0,12}"], 1..8)
            .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn no_configured_pattern_survives_masking(text in text_with_pii()) {
            let r = RedactionConfig {
                custom: vec![CustomRule { name: "order".into(), pattern: r"ORD-[0-9]{6}".into() }],
                ..RedactionConfig::default()
            }.build().unwrap();
            let out = r.redact_str(&text);
            prop_assert!(!r.finds_any(&out), "{text:?} -> {out:?}");
        }

        #[test]
        fn no_configured_pattern_survives_hashing(text in text_with_pii()) {
            let r = hashing();
            let out = r.redact_str(&text);
            prop_assert!(!r.finds_any(&out), "{text:?} -> {out:?}");
        }
    }
}
