//! Field-by-field comparison of two brokers' answers, and the list of differences Fjord
//! keeps on purpose, read from `docs/compatibility.md` so the document and the test cannot
//! drift apart.
//!
//! An answer is compared as the `{:#?}` text of its decoded, normalised response, flattened
//! into `path = value` lines (`topics[0].partitions[1].error_code = 0`), so a difference names
//! its field. Masked fields (node ids, ports, cluster and topic ids, member and producer ids,
//! throttle times, fetch session ids) are ones that differ between any two brokers.

use std::collections::BTreeMap;
use std::path::Path;

use super::session::CLOSED;

/// Fields whose values differ between any two brokers, whatever they are.
const MASKED: &[&str] = &[
    "throttle_time_ms",
    "cluster_id",
    "topic_id",
    "member_id",
    "leader",
    "producer_id",
    "client_host",
    "host",
    "port",
    "session_id",
];
/// Human-readable texts: each broker words them its own way; whether there is one is compared.
const MESSAGES: &[&str] = &["error_message"];
/// Fields holding broker ids: masked unless -1 (no leader, no coordinator), which means
/// the same on every broker.
const NODE_IDS: &[&str] = &[
    "node_id",
    "broker_id",
    "controller_id",
    "leader_id",
    "replica_nodes",
    "isr_nodes",
    "offline_replicas",
    "coordinator_id",
];

/// `{:#?}` text as (path, value) pairs, with the masked fields replaced.
pub(super) fn flatten(debug: &str) -> Vec<(String, String)> {
    if debug == CLOSED {
        return vec![("outcome".to_string(), CLOSED.to_string())];
    }
    let mut out = vec![("outcome".to_string(), "answered".to_string())];
    // (path, next element index, is a tuple wrapper whose one child takes the path itself)
    let mut stack: Vec<(String, usize, bool)> = vec![(String::new(), 0, false)];
    for raw in debug.lines() {
        let line = raw.trim().trim_end_matches(',');
        if matches!(line, "}" | "]" | ")") {
            stack.pop();
            continue;
        }
        let depth = stack.len();
        let (parent, index, tuple) =
            stack.last_mut().map(|(p, i, t)| (p.clone(), i, *t)).expect("stack holds the root");
        let (path, value) = match field_split(line) {
            Some((name, value)) if depth > 1 => (join(&parent, name), value),
            Some((_, value)) => (String::new(), value),
            None if tuple => (parent.clone(), line),
            None if depth == 1 => (String::new(), line),
            None => {
                let path = format!("{parent}[{index}]");
                *index += 1;
                (path, line)
            }
        };
        if value.ends_with('{') || value.ends_with('[') || value.ends_with('(') {
            stack.push((path, 0, value.ends_with('(')));
        } else {
            let value = mask(&path, value);
            out.push((path, value));
        }
    }
    rekey(out)
}

/// Fields that identify an element of an array of structs: an element whose `name` is
/// "retention.ms" is `configs["retention.ms"]`, so both brokers' elements pair up by what they
/// describe, not by their position.
const KEYS: &[&str] = &["name", "group_id", "api_key"];

/// Renames `x[i]` to `x[KEY]` in every path where element `i` has one of the `KEYS` fields.
fn rekey(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut keys = std::collections::HashMap::new();
    for (path, value) in &pairs {
        if let Some((element, field)) = path.rsplit_once('.') {
            if KEYS.contains(&field) && element.ends_with(']') && !keys.contains_key(element) {
                keys.insert(element.to_string(), value.clone());
            }
        }
    }
    pairs
        .into_iter()
        .map(|(path, value)| {
            let mut original = String::new();
            let mut renamed = String::new();
            for (n, segment) in path.split('.').enumerate() {
                if n > 0 {
                    original.push('.');
                    renamed.push('.');
                }
                original.push_str(segment);
                match (keys.get(&original), segment.rfind('[')) {
                    (Some(key), Some(at)) => {
                        renamed.push_str(&segment[..at]);
                        renamed.push('[');
                        renamed.push_str(key);
                        renamed.push(']');
                    }
                    _ => renamed.push_str(segment),
                }
            }
            (renamed, value)
        })
        .collect()
}

/// `name: value` when the line starts with a field name (or a quoted map key).
fn field_split(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(": ")?;
    let ident = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let key = name.starts_with('"') && name.ends_with('"');
    (ident || key).then_some((name.trim_matches('"'), value))
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('.').map(|s| s.split('[').next().unwrap_or(s))
}

fn mask(path: &str, value: &str) -> String {
    if segments(path).any(|s| MASKED.contains(&s)) {
        return "<masked>".to_string();
    }
    if segments(path).any(|s| MESSAGES.contains(&s)) && value != "None" {
        return "<message>".to_string();
    }
    if segments(path).any(|s| NODE_IDS.contains(&s)) && value != "-1" {
        return "<node>".to_string();
    }
    value.to_string()
}

/// The value of a field one answer lacks.
pub(super) const ABSENT: &str = "(absent)";

/// One field that differs.
#[derive(Debug, Clone)]
pub(super) struct Difference {
    pub case: String,
    pub path: String,
    pub fjord: String,
    pub kafka: String,
}

/// Every field of each case that differs between the two brokers' observations.
pub(super) fn differences(
    fjord: &[(String, String)],
    kafka: &[(String, String)],
) -> Vec<Difference> {
    assert_eq!(fjord.len(), kafka.len(), "both brokers ran the same cases");
    let mut found = Vec::new();
    for ((case, f), (case_k, k)) in fjord.iter().zip(kafka) {
        assert_eq!(case, case_k, "cases in the same order");
        let f: BTreeMap<String, String> = flatten(f).into_iter().collect();
        let k: BTreeMap<String, String> = flatten(k).into_iter().collect();
        let absent = ABSENT.to_string();
        for path in f.keys().chain(k.keys()).collect::<std::collections::BTreeSet<_>>() {
            let (fv, kv) = (f.get(path).unwrap_or(&absent), k.get(path).unwrap_or(&absent));
            if fv != kv {
                found.push(Difference {
                    case: case.clone(),
                    path: path.clone(),
                    fjord: fv.clone(),
                    kafka: kv.clone(),
                });
            }
        }
    }
    found
}

/// A row of the known-differences table: a case pattern and a field path prefix.
#[derive(Debug)]
pub(super) struct Known {
    pub case: String,
    pub path: String,
    /// The row's Fjord cell when it is `(absent)`: the row then covers only fields Fjord's
    /// answer lacks (Kafka says more), never a value that differs.
    pub only_absent: bool,
    pub line: usize,
}

/// `path` matches `pattern` as a prefix at a segment boundary; `[*]` in the pattern matches
/// any one index or key.
fn path_matches(pattern: &str, path: &str) -> bool {
    let (mut p, mut q) = (pattern, path);
    loop {
        match p.find("[*]") {
            None => {
                return q == p
                    || q.strip_prefix(p)
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['));
            }
            Some(at) => {
                let Some(rest) = q.strip_prefix(&p[..at]) else { return false };
                let Some(rest) = rest.strip_prefix('[') else { return false };
                // A key may hold brackets or dots of its own (a config name does not; a quoted
                // key ends at `"]`).
                let end = if rest.starts_with('"') {
                    rest.find("\"]").map(|i| i + 1)
                } else {
                    rest.find(']')
                };
                let Some(end) = end else { return false };
                q = &rest[end + 1..];
                p = &p[at + 3..];
            }
        }
    }
}

impl Known {
    /// `case` matches exactly, or up to a trailing `*`; `path` matches as a prefix at a
    /// segment boundary, or everything when it is `*`.
    pub(super) fn covers(&self, difference: &Difference) -> bool {
        let case = match self.case.strip_suffix('*') {
            Some(prefix) => difference.case.starts_with(prefix),
            None => difference.case == self.case,
        };
        let path = self.path == "*" || path_matches(&self.path, &difference.path);
        case && path && (!self.only_absent || difference.fjord == ABSENT)
    }
}

/// The heading of the table in `docs/compatibility.md` this test reads.
pub(super) const KNOWN_HEADING: &str = "## Differences from Apache Kafka 4.4";

/// Rows `| \`case\` | \`path\` | ... |` of the table under `KNOWN_HEADING`.
pub(super) fn known_differences() -> Vec<Known> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/compatibility.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let start = text
        .find(KNOWN_HEADING)
        .unwrap_or_else(|| panic!("{} has no section `{KNOWN_HEADING}`", path.display()));
    let before = text[..start].lines().count();
    let mut rows = Vec::new();
    for (n, line) in text[start..].lines().enumerate().skip(1) {
        if line.starts_with("## ") {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let unquote = |s: &str| s.trim_matches('`').to_string();
        rows.push(Known {
            case: unquote(cells[1]),
            path: unquote(cells[2]),
            only_absent: cells[3] == ABSENT,
            line: before + n + 1,
        });
    }
    rows
}

#[test]
fn flatten_names_nested_fields_and_masks_ids() {
    let text = "Response {\n    throttle_time_ms: 5,\n    topics: [\n        Topic {\n            name: Some(\n                \"a\",\n            ),\n            leader_id: 3,\n            isr_nodes: [\n                -1,\n            ],\n        },\n    ],\n}";
    let flat = flatten(text);
    assert_eq!(
        flat,
        vec![
            ("outcome".to_string(), "answered".to_string()),
            ("throttle_time_ms".to_string(), "<masked>".to_string()),
            ("topics[\"a\"].name".to_string(), "\"a\"".to_string()),
            ("topics[\"a\"].leader_id".to_string(), "<node>".to_string()),
            ("topics[\"a\"].isr_nodes[0]".to_string(), "-1".to_string()),
        ]
    );
}

#[test]
fn known_paths_match_by_prefix_and_wildcard() {
    assert!(path_matches("results[0].configs", "results[0].configs[\"a.b\"].value"));
    assert!(path_matches("results[0].configs[*]", "results[0].configs[\"a.b\"].value"));
    assert!(path_matches("topics[*].configs[*]", "topics[\"t\"].configs[\"x\"].name"));
    assert!(!path_matches("results[0].config", "results[0].configs[\"a\"]"));
    assert!(!path_matches("topics[*].configs[*]", "topics[\"t\"].error_code"));
}
