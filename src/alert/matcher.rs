//! Label matchers, written as in Alertmanager: `name=value`, `name!=value`, `name=~regex`,
//! `name!~regex` (the value may be double-quoted; regexes are anchored at both ends). A label
//! that is absent matches as the empty string.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::Labels;

/// A matcher could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad matcher {text:?}: {problem}")]
pub struct MatcherError {
    /// The text as given.
    pub text: String,
    /// What is wrong.
    pub problem: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Regex => "=~",
            Self::NotRegex => "!~",
        }
    }
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: Op,
    value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// Parses `name=value`, `name!=value`, `name=~regex` or `name!~regex`.
    ///
    /// # Errors
    /// When the text has no operator, the name is not a label name, a quoted value is not
    /// closed, or the regex does not compile.
    pub fn parse(text: &str) -> Result<Self, MatcherError> {
        let err = |problem: &str| MatcherError {
            text: text.to_owned(),
            problem: problem.to_owned(),
        };
        let trimmed = text.trim();
        let Some(op_at) = trimmed.find(['=', '!']) else {
            return Err(err(
                "expected name=value, name!=value, name=~regex or name!~regex",
            ));
        };
        let name = trimmed[..op_at].trim();
        let rest = &trimmed[op_at..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (Op::Regex, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (Op::NotRegex, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (Op::NotEqual, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Equal, v)
        } else {
            return Err(err("expected an operator: =, !=, =~ or !~"));
        };
        if !is_label_name(name) {
            return Err(err("the label name must match [a-zA-Z_][a-zA-Z0-9_]*"));
        }
        let value = value.trim();
        let value = if let Some(inner) = value.strip_prefix('"') {
            inner
                .strip_suffix('"')
                .ok_or_else(|| err("unterminated quoted value"))?
                .to_owned()
        } else {
            value.to_owned()
        };
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| err(&format!("invalid regex: {e}")))?,
            ),
            Op::Equal | Op::NotEqual => None,
        };
        Ok(Self {
            name: name.to_owned(),
            op,
            value,
            regex,
        })
    }

    /// Returns the label name it tests.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns true when `labels` satisfy the matcher (an absent label is the empty string).
    pub fn matches(&self, labels: &Labels) -> bool {
        let actual = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (Op::Equal, _) => actual == self.value,
            (Op::NotEqual, _) => actual != self.value,
            (Op::Regex, Some(re)) => re.is_match(actual),
            (Op::NotRegex, Some(re)) => !re.is_match(actual),
            (Op::Regex | Op::NotRegex, None) => false,
        }
    }
}

/// Returns true when every matcher matches (an empty list matches everything).
pub(crate) fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"{}\"", self.name, self.op.as_str(), self.value)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Matcher::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_and_matches_every_operator() {
        let l = labels(&[("alertname", "BrokerDown"), ("cluster", "main")]);
        assert!(Matcher::parse("alertname=BrokerDown").unwrap().matches(&l));
        assert!(
            Matcher::parse("alertname = \"BrokerDown\"")
                .unwrap()
                .matches(&l)
        );
        assert!(!Matcher::parse("alertname!=BrokerDown").unwrap().matches(&l));
        assert!(Matcher::parse("cluster=~ma.*").unwrap().matches(&l));
        assert!(
            !Matcher::parse("cluster=~ma").unwrap().matches(&l),
            "anchored"
        );
        assert!(Matcher::parse("cluster!~other|x").unwrap().matches(&l));
        assert!(
            Matcher::parse("missing=").unwrap().matches(&l),
            "absent is empty"
        );
        assert!(Matcher::parse("missing!=x").unwrap().matches(&l));
    }

    #[test]
    fn refuses_bad_text() {
        for bad in ["", "alertname", "1x=a", "a=\"b", "a=~(", "=a"] {
            assert!(Matcher::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn round_trips_through_text() {
        let m = Matcher::parse("stage=~\"svc/\\d+\"").unwrap();
        let text = m.to_string();
        assert_eq!(text, "stage=~\"svc/\\d+\"");
        assert_eq!(Matcher::parse(&text).unwrap(), m);
    }
}
