//! The layers hold: no file of a crate imports, directly or through others, a file that
//! imports it back. Each crate's `src/` is read as text; a file's imports are the `crate::`
//! and `super::` paths it names (up to its first `#[cfg(test)]`, whose `use super::*` is the
//! file itself), each resolved to the longest module path that is a file. `mod x;` lines
//! declare, they do not import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Source files per crate read at most; far above today's, a bound on a runaway walk.
const FILES_MAX: usize = 1_000;

#[test]
fn no_crate_has_an_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    for krate in ["src", "storage/src", "replication/src"] {
        let graph = import_graph(&root.join(krate));
        assert!(graph.len() > 5, "{krate}: only {} modules read", graph.len());
        if let Some(cycle) = find_cycle(&graph) {
            failures.push(format!("{krate}: {}", cycle.join(" -> ")));
        }
    }
    assert!(failures.is_empty(), "import cycles:\n{}", failures.join("\n"));
}

#[test]
fn a_cycle_is_found_where_there_is_one() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
            .into_iter()
            .map(|(m, to)| (m.to_string(), to.into_iter().map(str::to_string).collect()))
            .collect();
    let cycle = find_cycle(&graph).expect("a -> b -> c -> a");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
    let acyclic: BTreeMap<String, BTreeSet<String>> =
        graph.into_iter().filter(|(m, _)| m != "c").collect();
    assert_eq!(find_cycle(&acyclic), None);
}

/// Module path ("broker::shards"; "" for the crate root) -> the module paths it imports.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = rust_files(src);
    let modules: BTreeMap<String, PathBuf> =
        files.iter().map(|file| (module_path(src, file), file.clone())).collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("read a source file");
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let children = declared_modules(text);
        let text = without_reexports(text);
        let mut imports = BTreeSet::new();
        for path in named_paths(&text, &children) {
            let absolute = if let Some(rest) = path.strip_prefix("crate::") {
                rest.to_string()
            } else if path.starts_with("super::") {
                resolve_super(module, &path)
            } else if module.is_empty() {
                path
            } else {
                format!("{module}::{path}")
            };
            if let Some(target) = longest_module(&modules, &absolute) {
                if target != *module {
                    imports.insert(target);
                }
            }
        }
        graph.insert(module.clone(), imports);
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
        assert!(files.len() <= FILES_MAX, "more than {FILES_MAX} files under {}", dir.display());
    }
    files
}

/// `src/broker/mod.rs` -> "broker", `src/broker/shards.rs` -> "broker::shards".
fn module_path(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("a file under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

/// `text` without its `pub use` statements: a re-export is a folder's table of contents,
/// not a dependency of the folder's own code.
fn without_reexports(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut in_reexport = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if !in_reexport && trimmed.starts_with("pub") && trimmed.contains(" use ") {
            in_reexport = true;
        }
        if in_reexport {
            in_reexport = !line.contains(';');
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

/// The modules `text` declares (`mod x;`, `pub(crate) mod x;`): paths may name them bare.
fn declared_modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let name = line.strip_suffix(';')?.rsplit_once("mod ")?.1;
            let visibility = line.split("mod ").next().unwrap_or_default().trim();
            let declares = visibility.is_empty() || visibility.starts_with("pub");
            (declares && name.chars().all(|c| c.is_alphanumeric() || c == '_'))
                .then(|| name.to_string())
        })
        .collect()
}

/// Every path named in `text` that starts with `crate::`, `super::` or a declared child
/// module, as written.
fn named_paths(text: &str, children: &[String]) -> Vec<String> {
    let mut paths = Vec::new();
    let starts = ["crate::".to_string(), "super::".to_string()]
        .into_iter()
        .chain(children.iter().map(|child| format!("{child}::")));
    for start in starts {
        let start = start.as_str();
        let mut rest = text;
        while let Some(at) = rest.find(start) {
            let preceded_by_ident = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if !preceded_by_ident {
                paths.push(tail[..end].trim_end_matches(':').to_string());
            }
            rest = &tail[end.max(start.len())..];
        }
    }
    paths
}

/// `super::x` seen in `module` (a `mod.rs` is its folder's module, so its `super` is the
/// folder's parent) as a path from the crate root.
fn resolve_super(module: &str, path: &str) -> String {
    let mut base: Vec<&str> = if module.is_empty() { vec![] } else { module.split("::").collect() };
    let mut rest = path;
    while let Some(after) = rest.strip_prefix("super::") {
        base.pop();
        rest = after;
    }
    base.into_iter().chain(rest.split("::")).collect::<Vec<_>>().join("::")
}

/// The longest prefix of `path` that is a module with a file of its own.
fn longest_module(modules: &BTreeMap<String, PathBuf>, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| modules.contains_key(m))
}

/// A cycle as its modules in order, the first repeated at the end; `None` if there is none.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(module.to_string(), Mark::Open);
        stack.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|m| m == next).expect("open is on the stack");
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, marks, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(module.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for module in graph.keys() {
        if !marks.contains_key(module) {
            if let Some(cycle) = visit(module, graph, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}
