//! The crate's layers, checked: every `crate::` and `super::` path in `src/` (outside
//! comments) is an import edge from its file to the module it names. The test fails on an
//! edge that points to a higher layer, on one family reaching into another, and on any
//! circle of files.
//!
//! Layers, bottom to top: `protocol` (atomics and the loom-checked cores), `os` (system
//! calls), `format` (errors, schema, layout, records, memory, views), `wait` (the one step
//! core), the families (`channel`, `broadcast`, `seqlock`, `event`, `service`), `inspect` and
//! `waitset`, then the test
//! kits (`conformance`, `testing`) and `lib.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn layer(module: &str) -> (u32, &str) {
    let top = module.split("::").next().unwrap_or("");
    let rank = match top {
        "protocol" => 0,
        "os" => 1,
        "format" => 2,
        "wait" => 3,
        "channel" | "broadcast" | "seqlock" | "event" | "service" => 4,
        "inspect" | "waitset" => 5,
        "conformance" | "testing" => 6,
        "" => 7,
        other => panic!("module `{other}` has no layer: add it to tests/layers.rs"),
    };
    (rank, top)
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `format/raw.rs` → `format::raw`; `channel/mod.rs` → `channel`; `lib.rs` → ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// The paths a line names: `crate::a::b::{c, d}` gives `a::b::c` and `a::b::d` (as far as
/// they go), `super::x` gives the parent's `x`.
fn paths(line: &str, parent: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", String::new()), ("super::", parent.to_owned())] {
        let mut rest = line;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = rest
                .chars()
                .take_while(|c| {
                    c.is_alphanumeric()
                        || *c == '_'
                        || *c == ':'
                        || *c == '{'
                        || *c == ','
                        || *c == ' '
                        || *c == '*'
                })
                .collect();
            let (head, group) = match path.find('{') {
                Some(j) => (&path[..j], Some(&path[j + 1..])),
                None => (path.as_str(), None),
            };
            let join = |tail: &str| {
                let tail = tail.trim().trim_end_matches("::*").trim_end_matches(':');
                if base.is_empty() {
                    tail.to_owned()
                } else if tail.is_empty() {
                    base.clone()
                } else {
                    format!("{base}::{tail}")
                }
            };
            match group {
                Some(g) => {
                    for item in g.split(',') {
                        let item = item.trim();
                        if !item.is_empty() {
                            out.push(join(&format!("{head}{item}")));
                        }
                    }
                }
                None => out.push(join(head)),
            }
        }
    }
    out
}

/// The longest prefix of `path` that is a module of the crate.
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    (0..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| modules.contains(m))
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let modules: BTreeSet<String> = all.iter().map(|f| module_of(&src, f)).collect();
    let mut edges = BTreeMap::new();
    for f in &all {
        let m = module_of(&src, f);
        let is_mod = f
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs");
        let parent = if is_mod {
            // `super` in a mod.rs is the folder's parent.
            m.rsplit_once("::")
                .map_or(String::new(), |(p, _)| p.to_owned())
        } else {
            m.rsplit_once("::")
                .map_or(String::new(), |(p, _)| p.to_owned())
        };
        let text = std::fs::read_to_string(f).unwrap();
        let mut to = BTreeSet::new();
        for line in text.lines() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for p in paths(code, &parent) {
                if let Some(t) = resolve(&p, &modules) {
                    if t != m && !t.is_empty() {
                        to.insert(t);
                    }
                }
            }
        }
        edges.insert(m, to);
    }
    edges
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every edge against the layers.
fn upward(g: &Graph) -> Vec<String> {
    let mut bad = Vec::new();
    for (from, tos) in g {
        let (rf, ff) = layer(from);
        for to in tos {
            let (rt, ft) = layer(to);
            if rt > rf || (rf == 4 && rt == 4 && ff != ft) {
                bad.push(format!("{from} -> {to}"));
            }
        }
    }
    bad
}

/// Every circle a depth-first search closes.
fn circles(g: &Graph) -> Vec<String> {
    fn visit<'a>(
        n: &'a str,
        g: &'a Graph,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        circles: &mut Vec<String>,
    ) {
        state.insert(n, 1);
        stack.push(n);
        for t in g.get(n).into_iter().flatten() {
            match state.get(t.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| *s == t).unwrap();
                    circles.push(format!("{} -> {t}", stack[at..].join(" -> ")));
                }
                Some(_) => {}
                None => visit(t, g, state, stack, circles),
            }
        }
        stack.pop();
        state.insert(n, 2);
    }
    let mut state = BTreeMap::new();
    let mut out = Vec::new();
    for n in g.keys() {
        if !state.contains_key(n.as_str()) {
            visit(n, g, &mut state, &mut Vec::new(), &mut out);
        }
    }
    out
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let g = graph();
    assert!(g.len() > 30, "the scan found too few files: {}", g.len());
    let bad = upward(&g);
    assert!(
        bad.is_empty(),
        "imports against the layers:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_circle_of_files() {
    let c = circles(&graph());
    assert!(c.is_empty(), "import circles:\n{}", c.join("\n"));
}

#[test]
fn the_checks_can_fail() {
    // The checks above would pass on a scan that finds nothing: the scan finds the edges
    // everybody knows are there.
    let g = graph();
    let has = |a: &str, b: &str| g.get(a).is_some_and(|t| t.contains(b));
    assert!(
        has("channel::sender", "channel::ring"),
        "{:?}",
        g.get("channel::sender")
    );
    assert!(has("channel::ring", "channel::layout"));
    assert!(has("format::raw", "format::error"));
    assert!(has("wait", "os::park"));
    assert!(has("broadcast::subscriber", "broadcast::receive"));
    assert_eq!(
        paths("use super::{ring::*, segment::*};", "channel"),
        ["channel::ring", "channel::segment"]
    );
    assert_eq!(
        paths("x = crate::os::futex::wake(w);", ""),
        ["os::futex::wake"]
    );
    // And on a made-up graph they find an upward edge, a family reaching into another,
    // and a circle.
    let mut bad: Graph = BTreeMap::new();
    bad.entry("os::futex".into())
        .or_default()
        .insert("wait".into());
    bad.entry("channel::sender".into())
        .or_default()
        .insert("broadcast::layout".into());
    bad.entry("format::a".into())
        .or_default()
        .insert("format::b".into());
    bad.entry("format::b".into())
        .or_default()
        .insert("format::a".into());
    assert_eq!(
        upward(&bad),
        ["channel::sender -> broadcast::layout", "os::futex -> wait"]
    );
    assert_eq!(circles(&bad), ["format::a -> format::b -> format::a"]);
}
