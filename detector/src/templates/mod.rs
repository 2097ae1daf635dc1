//! Streaming log template mining, Drain-like.
//!
//! A log message is cut into whitespace-separated tokens; the pieces of a token between `:`, `=`
//! and `,` that contain a digit (numbers, ids, addresses, ports, paths with numbers, timestamps)
//! are variables and become `<*>` before anything else. Messages are then grouped as Drain does (He et al., ICWS 2017): first by token count,
//! then by their first `depth - 2` tokens (a variable token or a node with `max_children`
//! children already goes to a `<*>` child), and in that leaf the message joins the most similar
//! template (share of equal non-variable tokens at the same positions) if the similarity reaches
//! `similarity_threshold`; positions that differ become `<*>`. Otherwise a new template starts.
//! At most `max_templates` templates are kept: messages beyond that join the catch-all template
//! `<overflow>` and are counted.
//!
//! Every template also remembers the highest severity seen with it (OTLP severity numbers: 13-16
//! warn, 17-20 error, 21-24 fatal) and whether its text reads like a failure (an error keyword),
//! the prior that log models use to tell a rare failure from a rare routine.
//!
//! ```
//! use linfa::ParamGuard;
//! use pipewarden_detector::templates::TemplateMiner;
//!
//! let mut miner = TemplateMiner::new(TemplateMiner::params().check()?);
//! let first = miner.add("Receiving block blk_1 src: /10.0.0.1:50010 dest: /10.0.0.2:50010", 9);
//! let second = miner.add("Receiving block blk_2 src: /10.0.0.3:50010 dest: /10.0.0.2:50010", 9);
//! assert_eq!(first.id, second.id);
//! assert!(first.is_new && !second.is_new);
//! let text = miner.template(first.id).unwrap().text();
//! assert_eq!(text, "Receiving block <*> src: <*>:<*> dest: <*>:<*>");
//! # Ok::<(), pipewarden_detector::templates::DrainParamsError>(())
//! ```

mod error;
mod hyperparams;

use std::collections::HashMap;
use std::ops::Range;

use foldhash::fast::RandomState;

pub use error::DrainParamsError;
pub use hyperparams::{DrainParams, DrainValidParams};

/// Token standing for a variable part of a message.
pub const WILDCARD: &str = "<*>";

/// Text of the template that collects messages beyond `max_templates`.
pub const OVERFLOW_TEMPLATE: &str = "<overflow>";

/// Lowest OTLP severity number of a warning.
pub const SEVERITY_WARN: u8 = 13;

/// Words that make a template read like a failure (matched case-insensitively in its text).
const ERROR_KEYWORDS: [&str; 16] = [
    "exception",
    "error",
    "fail",
    "fatal",
    "timeout",
    "timed out",
    "interrupt",
    "refused",
    "reset by",
    "denied",
    "corrupt",
    "unable",
    "cannot",
    "could not",
    "abort",
    "panic",
];

/// Identifier of a template, dense from 0 in order of discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateId(pub u32);

/// Result of adding a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateMatch {
    /// The template the message belongs to.
    pub id: TemplateId,
    /// Whether the message started this template.
    pub is_new: bool,
}

/// A mined template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    tokens: Vec<String>,
    text: String,
    count: u64,
    max_severity: u8,
    error_words: bool,
}

impl Template {
    fn new(tokens: Vec<String>) -> Template {
        let text = tokens.join(" ");
        let error_words = reads_like_failure(&text);
        Template {
            tokens,
            text,
            count: 0,
            max_severity: 0,
            error_words,
        }
    }

    /// Returns the template text (`<*>` for variable tokens).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Returns how many messages matched it.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Returns the highest severity number seen with it.
    pub fn max_severity(&self) -> u8 {
        self.max_severity
    }

    /// Returns whether it reads like a failure: a warning or worse was logged with it, or its
    /// text holds an error keyword.
    pub fn is_error_like(&self) -> bool {
        self.error_words || self.max_severity >= SEVERITY_WARN
    }
}

/// Appends `token` to `out` with its variable parts masked: the token is cut at `:`, `=` and
/// `,`, and each piece holding a digit becomes `<*>` (`10.0.0.1:50010:Transmitted` becomes
/// `<*>:<*>:Transmitted`, `retries=3` becomes `retries=<*>`).
fn mask_into(token: &str, out: &mut String) {
    if !token.bytes().any(|byte| byte.is_ascii_digit()) {
        out.push_str(token);
        return;
    }
    let mut rest = token;
    loop {
        let (piece, separator) = match rest.find([':', '=', ',']) {
            Some(at) => (&rest[..at], Some(&rest[at..=at])),
            None => (rest, None),
        };
        if piece.bytes().any(|byte| byte.is_ascii_digit()) {
            out.push_str(WILDCARD);
        } else {
            out.push_str(piece);
        }
        let Some(separator) = separator else {
            return;
        };
        out.push_str(separator);
        rest = &rest[piece.len() + 1..];
    }
}

/// Returns a token with its variable parts masked (see [`mask_into`]).
#[cfg(test)]
fn mask_token(token: &str) -> String {
    let mut masked = String::with_capacity(token.len());
    mask_into(token, &mut masked);
    masked
}

/// The masked tokens of one message, in one reused buffer (no allocation per token).
#[derive(Debug, Clone, Default)]
struct Tokens {
    text: String,
    spans: Vec<Range<usize>>,
}

impl Tokens {
    /// Replaces the tokens by the first `max_tokens` masked tokens of `message`.
    fn fill(&mut self, message: &str, max_tokens: usize) {
        self.text.clear();
        self.spans.clear();
        for token in message.split_whitespace().take(max_tokens) {
            let start = self.text.len();
            mask_into(token, &mut self.text);
            self.spans.push(start..self.text.len());
        }
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.spans.iter().map(|span| &self.text[span.clone()])
    }
}

/// A node of the prefix tree: the first node of a token count, an inner node (a prefix of
/// tokens), or a leaf holding templates.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Children by token (never `<*>`), at most `max_children`.
    children: HashMap<String, usize, RandomState>,
    /// The `<*>` child.
    wildcard: Option<usize>,
    /// Templates of a leaf.
    templates: Vec<TemplateId>,
}

/// Returns whether `text` holds an error keyword.
fn reads_like_failure(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ERROR_KEYWORDS.iter().any(|keyword| lower.contains(keyword))
}

/// The streaming template miner (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct TemplateMiner {
    params: DrainValidParams,
    templates: Vec<Template>,
    /// Nodes of the prefix tree (indices into it).
    nodes: Vec<Node>,
    /// First node of each token count.
    roots: HashMap<usize, usize, RandomState>,
    overflow: Option<TemplateId>,
    overflowed: u64,
    /// Tokens of the message being added (kept to reuse the buffers).
    scratch: Tokens,
}

impl TemplateMiner {
    /// Returns the default parameters (see [`DrainParams::new`]).
    pub fn params() -> DrainParams {
        DrainParams::new()
    }

    /// Returns an empty miner.
    pub fn new(params: DrainValidParams) -> Self {
        TemplateMiner {
            params,
            templates: Vec::new(),
            nodes: Vec::new(),
            roots: HashMap::default(),
            overflow: None,
            overflowed: 0,
            scratch: Tokens::default(),
        }
    }

    /// Returns the number of templates.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Returns whether no template was mined yet.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Returns how many messages went to the overflow template.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Returns a template by id.
    pub fn template(&self, id: TemplateId) -> Option<&Template> {
        self.templates.get(id.0 as usize)
    }

    /// Returns every template, indexed by id.
    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// Adds a message logged with OTLP severity number `severity` (0 when unknown) and returns
    /// its template.
    pub fn add(&mut self, message: &str, severity: u8) -> TemplateMatch {
        let mut tokens = std::mem::take(&mut self.scratch);
        tokens.fill(message, self.params.max_tokens);
        let matched = self.add_tokens(&tokens, severity);
        self.scratch = tokens;
        matched
    }

    fn add_tokens(&mut self, tokens: &Tokens, severity: u8) -> TemplateMatch {
        let leaf = self.leaf(tokens);
        let best = self.nodes[leaf]
            .templates
            .iter()
            .map(|&id| {
                (
                    id,
                    similarity(&self.templates[id.0 as usize].tokens, tokens),
                )
            })
            .filter(|&(_, similarity)| similarity >= self.params.similarity_threshold)
            // The most similar; the oldest among equals.
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(id, _)| id);
        let (id, is_new) = match best {
            Some(id) => {
                let template = &mut self.templates[id.0 as usize];
                if merge(&mut template.tokens, tokens) {
                    template.text = template.tokens.join(" ");
                    template.error_words = reads_like_failure(&template.text);
                }
                (id, false)
            }
            None if self.templates.len() >= self.params.max_templates => {
                self.overflowed += 1;
                (self.overflow_template(), false)
            }
            None => {
                let id = TemplateId(self.templates.len() as u32);
                self.templates
                    .push(Template::new(tokens.iter().map(str::to_owned).collect()));
                self.nodes[leaf].templates.push(id);
                (id, true)
            }
        };
        let template = &mut self.templates[id.0 as usize];
        template.count += 1;
        template.max_severity = template.max_severity.max(severity);
        TemplateMatch { id, is_new }
    }

    fn overflow_template(&mut self) -> TemplateId {
        if let Some(id) = self.overflow {
            return id;
        }
        let id = TemplateId(self.templates.len() as u32);
        self.templates
            .push(Template::new(vec![OVERFLOW_TEMPLATE.to_owned()]));
        self.overflow = Some(id);
        id
    }

    /// Returns the leaf of the prefix tree for `tokens` (the node of their count, then of their
    /// first `depth - 2` tokens), registering new inner children while the fan-out allows.
    fn leaf(&mut self, tokens: &Tokens) -> usize {
        let count = tokens.len();
        let prefix_len = self.params.depth.saturating_sub(2).min(count);
        let mut node = match self.roots.get(&count) {
            Some(&node) => node,
            None => {
                let node = self.push_node();
                self.roots.insert(count, node);
                node
            }
        };
        for token in tokens.iter().take(prefix_len) {
            node = self.child(node, token);
        }
        node
    }

    /// Returns the child of `node` for `token`: its own child, else a new one while `node` has
    /// fewer than `max_children`, else the `<*>` child.
    fn child(&mut self, node: usize, token: &str) -> usize {
        if token != WILDCARD {
            if let Some(&child) = self.nodes[node].children.get(token) {
                return child;
            }
            if self.nodes[node].children.len() < self.params.max_children {
                let child = self.push_node();
                self.nodes[node].children.insert(token.to_owned(), child);
                return child;
            }
        }
        if let Some(child) = self.nodes[node].wildcard {
            return child;
        }
        let child = self.push_node();
        self.nodes[node].wildcard = Some(child);
        child
    }

    fn push_node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }
}

/// Returns the share of positions where `template` and `tokens` hold the same constant token
/// (wildcard positions of the template count as neither).
fn similarity(template: &[String], tokens: &Tokens) -> f64 {
    if template.is_empty() {
        return 1.0;
    }
    let equal = template
        .iter()
        .zip(tokens.iter())
        .filter(|(expected, token)| *expected != WILDCARD && expected == token)
        .count();
    equal as f64 / template.len() as f64
}

/// Turns the positions where `tokens` differs from `template` into wildcards; returns whether
/// the template changed.
fn merge(template: &mut [String], tokens: &Tokens) -> bool {
    let mut changed = false;
    for (expected, token) in template.iter_mut().zip(tokens.iter()) {
        if expected != token && expected != WILDCARD {
            *expected = WILDCARD.to_owned();
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    use linfa::ParamGuard;
    use proptest::prelude::*;

    use super::reference::ReferenceMiner;
    use super::*;

    fn miner() -> TemplateMiner {
        TemplateMiner::new(TemplateMiner::params().check().unwrap())
    }

    #[test]
    fn masks_the_variable_pieces_of_a_token() {
        assert_eq!(
            mask_token("10.0.0.1:50010:Transmitted"),
            "<*>:<*>:Transmitted"
        );
        assert_eq!(mask_token("retries=3,"), "retries=<*>,");
        assert_eq!(mask_token("src:"), "src:");
        assert_eq!(mask_token("blk_-123"), "<*>");
    }

    #[test]
    fn masks_tokens_with_digits_and_groups_equal_shapes() {
        let mut miner = miner();
        let a = miner.add(
            "Deleting block blk_-42 file /mnt/hadoop/dfs/data/current/blk_-42",
            9,
        );
        let b = miner.add(
            "Deleting block blk_7 file /mnt/hadoop/dfs/data/current/blk_7",
            9,
        );
        assert_eq!(a.id, b.id);
        assert_eq!(
            miner.template(a.id).unwrap().text(),
            "Deleting block <*> file <*>"
        );
        assert_eq!(miner.template(a.id).unwrap().count(), 2);
    }

    #[test]
    fn differing_constant_tokens_merge_into_a_wildcard_above_the_threshold() {
        let mut miner = miner();
        let a = miner.add("session opened for user alice by sshd", 9);
        let b = miner.add("session opened for user bob by sshd", 9);
        assert_eq!(a.id, b.id);
        let text = miner.template(a.id).unwrap().text();
        assert_eq!(text, "session opened for user <*> by sshd");
        let c = miner.add("session closed after idle timeout on sshd", 9);
        assert_ne!(a.id, c.id);
        assert_eq!(miner.len(), 2);
    }

    #[test]
    fn error_likeness_comes_from_keywords_or_severity() {
        let mut miner = miner();
        let failure = miner.add("writeBlock blk_1 received exception java.io.IOException", 9);
        let routine = miner.add("Verification succeeded for blk_1", 9);
        let warned = miner.add("slow peer detected on volume", SEVERITY_WARN);
        assert!(miner.template(failure.id).unwrap().is_error_like());
        assert!(!miner.template(routine.id).unwrap().is_error_like());
        assert!(miner.template(warned.id).unwrap().is_error_like());
    }

    #[test]
    fn templates_beyond_the_cap_go_to_the_overflow_template() {
        let params = TemplateMiner::params().max_templates(2).check().unwrap();
        let mut miner = TemplateMiner::new(params);
        miner.add("alpha beta", 9);
        miner.add("gamma delta epsilon", 9);
        let third = miner.add("zeta", 9);
        let fourth = miner.add("eta theta iota kappa", 9);
        assert_eq!(third.id, fourth.id);
        assert_eq!(miner.template(third.id).unwrap().text(), OVERFLOW_TEMPLATE);
        assert_eq!(miner.overflowed(), 2);
    }

    #[test]
    fn mining_is_deterministic() {
        let lines = ["a b c", "a b d", "x y", "a q c", "x z"];
        let run = || {
            let mut miner = miner();
            let ids: Vec<TemplateId> = lines.iter().map(|line| miner.add(line, 0).id).collect();
            (ids, miner.templates().to_vec())
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn masks_empty_pieces_and_separators_like_split() {
        assert_eq!(mask_token("a::1"), "a::<*>");
        assert_eq!(mask_token(":1="), ":<*>=");
        assert_eq!(mask_token("k=v,n=2"), "k=v,n=<*>");
        assert_eq!(mask_token("é1:ü"), "<*>:ü");
    }

    /// Messages from a small vocabulary (constants, numbers, `key=value` pairs, addresses,
    /// separators, odd whitespace) so that templates are shared, merged and capped.
    fn message() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            prop::sample::select(vec![
                "Receiving",
                "block",
                "src:",
                "dest:",
                "PacketResponder",
                "for",
                "terminating",
                "<*>",
                "a:b",
                "x=y,",
                "error",
                "ok",
                ":",
                "=",
                ",",
                "é",
                "Verification",
            ])
            .prop_map(str::to_owned),
            (0u32..50).prop_map(|n| format!("blk_{n}")),
            (0u32..4, 0u32..3).prop_map(|(a, b)| format!("10.0.{a}.{b}:5001{b}")),
            (0u32..3).prop_map(|n| format!("retries={n},")),
        ];
        (
            prop::collection::vec(token, 0..9),
            prop::sample::select(vec![" ", "  ", "\t", " \u{3000}"]),
        )
            .prop_map(|(tokens, separator)| tokens.join(separator))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The buffered miner mines exactly what the first, allocating implementation mined:
        /// same template per message, same `is_new`, same texts, counts and severities.
        #[test]
        fn mines_like_the_allocating_reference(
            messages in prop::collection::vec((message(), 0u8..25), 1..120),
            depth in 3usize..6,
            max_children in 1usize..6,
            max_templates in 1usize..12,
            max_tokens in 1usize..8,
            similarity_threshold in prop::sample::select(vec![0.0, 0.4, 0.5, 0.8, 1.0]),
        ) {
            let params = TemplateMiner::params()
                .depth(depth)
                .max_children(max_children)
                .max_templates(max_templates)
                .max_tokens(max_tokens)
                .similarity_threshold(similarity_threshold)
                .check()
                .unwrap();
            let mut miner = TemplateMiner::new(params.clone());
            let mut reference = ReferenceMiner::new(params);
            for (message, severity) in &messages {
                let expected = reference.add(message, *severity);
                prop_assert_eq!(miner.add(message, *severity), expected, "{:?}", message);
            }
            let mined: Vec<_> = miner
                .templates()
                .iter()
                .map(|t| (t.text().to_owned(), t.count(), t.max_severity()))
                .collect();
            prop_assert_eq!(mined, reference.templates());
            prop_assert_eq!(miner.overflowed(), reference.overflowed);
        }
    }
}
