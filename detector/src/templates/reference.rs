//! The first, allocating implementation of the miner (a `String` per token, the prefix tree as
//! maps keyed by owned token paths), kept to check that the buffered one mines exactly the same
//! templates.

use std::collections::{HashMap, HashSet};

use super::{DrainValidParams, OVERFLOW_TEMPLATE, TemplateId, TemplateMatch, WILDCARD};

fn mask_token(token: &str) -> String {
    if !token.bytes().any(|byte| byte.is_ascii_digit()) {
        return token.to_owned();
    }
    let mut masked = String::with_capacity(token.len());
    for (index, piece) in token.split([':', '=', ',']).enumerate() {
        if index > 0 {
            let separator_at = token
                .bytes()
                .enumerate()
                .filter(|(_, byte)| matches!(byte, b':' | b'=' | b','))
                .nth(index - 1)
                .map_or(0, |(offset, _)| offset);
            masked.push(token.as_bytes()[separator_at] as char);
        }
        if piece.bytes().any(|byte| byte.is_ascii_digit()) {
            masked.push_str(WILDCARD);
        } else {
            masked.push_str(piece);
        }
    }
    masked
}

type LeafKey = (usize, Vec<String>);

/// Template text, count and highest severity.
pub type Mined = (String, u64, u8);

pub struct ReferenceMiner {
    params: DrainValidParams,
    templates: Vec<(Vec<String>, u64, u8)>,
    leaves: HashMap<LeafKey, Vec<TemplateId>>,
    children: HashMap<LeafKey, HashSet<String>>,
    overflow: Option<TemplateId>,
    pub overflowed: u64,
}

impl ReferenceMiner {
    pub fn new(params: DrainValidParams) -> Self {
        ReferenceMiner {
            params,
            templates: Vec::new(),
            leaves: HashMap::new(),
            children: HashMap::new(),
            overflow: None,
            overflowed: 0,
        }
    }

    pub fn templates(&self) -> Vec<Mined> {
        self.templates
            .iter()
            .map(|(tokens, count, severity)| (tokens.join(" "), *count, *severity))
            .collect()
    }

    pub fn add(&mut self, message: &str, severity: u8) -> TemplateMatch {
        let tokens: Vec<String> = message
            .split_whitespace()
            .take(self.params.max_tokens)
            .map(mask_token)
            .collect();
        let key = self.leaf_key(&tokens);
        let best = self.leaves.get(&key).and_then(|candidates| {
            candidates
                .iter()
                .map(|&id| (id, similarity(&self.templates[id.0 as usize].0, &tokens)))
                .filter(|&(_, similarity)| similarity >= self.params.similarity_threshold)
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|(id, _)| id)
        });
        let (id, is_new) = match best {
            Some(id) => {
                merge(&mut self.templates[id.0 as usize].0, &tokens);
                (id, false)
            }
            None if self.templates.len() >= self.params.max_templates => {
                self.overflowed += 1;
                let id = match self.overflow {
                    Some(id) => id,
                    None => {
                        let id = TemplateId(self.templates.len() as u32);
                        self.templates
                            .push((vec![OVERFLOW_TEMPLATE.to_owned()], 0, 0));
                        self.overflow = Some(id);
                        id
                    }
                };
                (id, false)
            }
            None => {
                let id = TemplateId(self.templates.len() as u32);
                self.templates.push((tokens, 0, 0));
                self.leaves.entry(key).or_default().push(id);
                (id, true)
            }
        };
        let template = &mut self.templates[id.0 as usize];
        template.1 += 1;
        template.2 = template.2.max(severity);
        TemplateMatch { id, is_new }
    }

    fn leaf_key(&mut self, tokens: &[String]) -> LeafKey {
        let prefix_len = self.params.depth.saturating_sub(2).min(tokens.len());
        let mut path = Vec::with_capacity(prefix_len);
        for token in &tokens[..prefix_len] {
            let children = self
                .children
                .entry((tokens.len(), path.clone()))
                .or_default();
            let child = if token == WILDCARD || children.contains(token) {
                token.clone()
            } else if children.len() < self.params.max_children {
                children.insert(token.clone());
                token.clone()
            } else {
                WILDCARD.to_owned()
            };
            path.push(child);
        }
        (tokens.len(), path)
    }
}

fn similarity(template: &[String], tokens: &[String]) -> f64 {
    if template.is_empty() {
        return 1.0;
    }
    let equal = template
        .iter()
        .zip(tokens)
        .filter(|(expected, token)| *expected != WILDCARD && expected == token)
        .count();
    equal as f64 / template.len() as f64
}

fn merge(template: &mut [String], tokens: &[String]) {
    for (expected, token) in template.iter_mut().zip(tokens) {
        if expected != token && expected != WILDCARD {
            *expected = WILDCARD.to_owned();
        }
    }
}
