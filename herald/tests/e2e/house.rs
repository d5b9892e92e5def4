//! The house's rules that a reader cannot check at a glance, checked on the source: no
//! module imports another in a loop, and every source file opens by saying what it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every crate of the workspace (the fuzz targets build alone).
const CRATES: [&str; 10] = [
    "schemas",
    "runtime",
    "ingest",
    "enricher",
    "dispatchers",
    "testkit",
    "testkit/standins",
    "wiring",
    "devtools",
    "herald",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

type Module = Vec<String>;

/// `providers/apns/mod.rs` is `providers::apns`; `lib.rs` and `main.rs` are the crate.
fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|last| ["mod", "lib", "main"].contains(&last.as_str())) {
        parts.pop();
    }
    parts
}

/// The source without comments and without `#[cfg(test)]` items: tests may reach anywhere.
fn production_code(source: &str) -> String {
    let without_comments: String = source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut code = without_comments;
    while let Some(at) = code.find("#[cfg(test)]") {
        let rest = &code[at..];
        let (brace, semicolon) = (rest.find('{'), rest.find(';'));
        let end = match (brace, semicolon) {
            (Some(b), Some(s)) if s < b => at + s + 1,
            (None, Some(s)) => at + s + 1,
            (Some(b), _) => {
                let mut depth = 0;
                let mut end = code.len();
                for (i, c) in code[at + b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = at + b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, None) => code.len(),
        };
        code.replace_range(at..end, "");
    }
    code
}

/// `prefix::{a, b::{c, d}}` as `prefix::a`, `prefix::b::c`, `prefix::b::d`.
fn expand(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else { return vec![path.to_owned()] };
    let prefix = path[..open].trim_end_matches("::");
    let inner = &path[open + 1..path.rfind('}').unwrap_or(path.len())];
    let (mut items, mut depth, mut item) = (Vec::new(), 0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    items.push(item);
    items
        .iter()
        .map(|i| i.split(" as ").next().unwrap_or_default().trim().to_owned())
        .filter(|i| !i.is_empty())
        .flat_map(|i| expand(&format!("{prefix}::{i}")))
        .collect()
}

/// The paths `code` names through `crate::`, `super::` or `self::`, in `use` or in code.
fn named_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let compact: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    for statement in compact.split("use ").skip(1) {
        let statement = statement.split(';').next().unwrap_or_default().replace(' ', "");
        if ["crate::", "super::", "self::"].iter().any(|p| statement.starts_with(p)) {
            paths.extend(expand(&statement));
        }
    }
    for start in ["crate::", "super::"] {
        for (at, _) in code.match_indices(start) {
            let before = code[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if path.len() > start.len() {
                paths.push(path);
            }
        }
    }
    paths
}

/// The modules of `crate_dir`, and which each imports.
fn imports(crate_dir: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let src = crate_dir.join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeMap<Module, PathBuf> =
        files.iter().map(|f| (module_of(&src, f), f.clone())).collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, file) in &modules {
        let code = production_code(&std::fs::read_to_string(file).unwrap());
        let mut targets = BTreeSet::new();
        for path in named_paths(&code) {
            let mut parts = path.split("::").peekable();
            let mut at: Module = module.clone();
            if parts.peek() == Some(&"crate") {
                at.clear();
                parts.next();
            }
            while let Some(step) = parts.peek() {
                match *step {
                    "super" => drop(at.pop()),
                    "self" => {}
                    _ => break,
                }
                parts.next();
            }
            for part in parts {
                let mut deeper = at.clone();
                deeper.push(part.to_owned());
                if !modules.contains_key(&deeper) {
                    break;
                }
                at = deeper;
            }
            targets.insert(at);
        }
        // `child::item` and `use child::item`, relative to this module.
        for child in modules.keys().filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
        {
            let name = format!("{}::", child[module.len()]);
            let named = code.match_indices(&name).any(|(at, _)| {
                !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
            });
            if named {
                targets.insert(child.clone());
            }
        }
        targets.remove(module);
        targets.retain(|t| modules.contains_key(t));
        edges.insert(module.clone(), targets);
    }
    edges
}

/// The loops among the children of each module, a child standing for its whole subtree. A
/// module using its own parent (the trait it implements) or its own child does not count.
fn sibling_loops(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<(Module, Vec<String>)> {
    let mut levels: BTreeMap<Module, BTreeMap<Module, BTreeSet<Module>>> = BTreeMap::new();
    for (from, targets) in edges {
        for to in targets {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue;
            }
            let level = from[..common].to_vec();
            let (a, b) = (from[..=common].to_vec(), to[..=common].to_vec());
            let graph = levels.entry(level).or_default();
            graph.entry(a).or_default().insert(b.clone());
            graph.entry(b).or_default();
        }
    }
    let mut loops = Vec::new();
    for (level, graph) in levels {
        // The first module that reaches itself, and every module on a loop through it.
        let looping = graph.keys().find(|m| reachable(&graph, m).contains(*m));
        if let Some(start) = looping {
            let members: Vec<String> = reachable(&graph, start)
                .iter()
                .filter(|m| reachable(&graph, m).contains(start))
                .filter_map(|m| m.last().cloned())
                .collect();
            loops.push((level, members));
        }
    }
    loops
}

/// The modules `start` imports, directly or not.
fn reachable(graph: &BTreeMap<Module, BTreeSet<Module>>, start: &Module) -> BTreeSet<Module> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&Module> = graph.get(start).into_iter().flatten().collect();
    while let Some(node) = stack.pop() {
        if seen.insert(node.clone()) {
            stack.extend(graph.get(node).into_iter().flatten());
        }
    }
    seen
}

#[test]
fn no_module_imports_another_in_a_loop() {
    let mut found = Vec::new();
    let mut modules = 0;
    for krate in CRATES {
        let edges = imports(&root().join(krate));
        modules += edges.len();
        for (level, members) in sibling_loops(&edges) {
            let level = if level.is_empty() { "the crate root".into() } else { level.join("::") };
            found.push(format!("{krate}: under {level}: {}", members.join(", ")));
        }
    }
    assert!(modules > 150, "only {modules} modules read: is the walk broken?");
    assert!(found.is_empty(), "modules importing each other in a loop:\n{}", found.join("\n"));
}

#[test]
fn a_loop_between_two_modules_is_found_and_a_parent_child_pair_is_not() {
    let module = |path: &str| -> Module { path.split("::").map(str::to_owned).collect() };
    let edges = |pairs: &[(&str, &str)]| {
        let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (from, to) in pairs {
            edges.entry(module(from)).or_default().insert(module(to));
        }
        edges
    };
    let looped = edges(&[("config", "providers::apns"), ("providers::registry", "config")]);
    assert_eq!(sibling_loops(&looped).len(), 1);
    let layered = edges(&[("providers::apns", "providers"), ("providers", "providers::apns")]);
    assert!(sibling_loops(&layered).is_empty(), "a parent and its child");
    let code = "use crate::{a::b, c};\nfn f() { super::d::e(); }\n#[cfg(test)]\nmod tests { use crate::z; }";
    let paths = named_paths(&production_code(code));
    assert_eq!(paths, ["crate::a::b", "crate::c", "super::d::e"]);
}

#[test]
fn every_source_file_opens_by_saying_what_it_is() {
    let mut silent = Vec::new();
    for krate in CRATES {
        let mut files = Vec::new();
        sources(&root().join(krate).join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.starts_with("//!") {
                silent.push(file.strip_prefix(root()).unwrap_or(&file).display().to_string());
            }
        }
    }
    assert!(silent.is_empty(), "source files without an opening `//!` doc: {silent:?}");
}
