//! House rules on the source tree, checked on every test run:
//!
//! - **No import cycles between files.** A file depends on another when it
//!   names one of its items through a `use` or a path (`crate::…`,
//!   `super::…`, `self::…`, or an imported module's name). A module's
//!   use of its own submodules is ownership, not dependence (a parent
//!   re-exports and drives its children; children may use the parent's
//!   shared types), so what counts is every other edge: between siblings,
//!   and across modules. That is where layering breaks.
//! - **No file in `src/` over [`MAX_LINES`] lines** unless its module doc
//!   says why (a line starting `//! Long:`).
//! - **The binary defines no vtable of libtorch's classes** that the C++
//!   shims declare themselves (`csrc/process_group.cpp`): one would take
//!   the place of libtorch's own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

/// One source file: its module path (`["engine", "trainer"]`) and text.
struct File {
    module: Vec<String>,
    text: String,
}

fn source_files() -> BTreeMap<PathBuf, File> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).expect("under src");
            let mut module: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).expect("source is UTF-8");
            files.insert(relative.to_path_buf(), File { module, text });
        }
    }
    files
}

/// The text with comments and string literals blanked (paths in prose or
/// messages are not dependencies).
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            i += end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|&c| c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            let end = rest[body..]
                .find(&close)
                .map_or(rest.len(), |e| body + e + close.len());
            out.push_str("\"\"");
            i += end;
        } else if rest.starts_with('"') {
            let mut j = 1;
            let b = rest.as_bytes();
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += (j + 1).min(rest.len());
        } else if rest.starts_with("'")
            && rest.len() > 2
            && (rest.as_bytes()[2] == b'\'' || rest.starts_with("'\\"))
        {
            // A char literal ('"' would otherwise open a string).
            let end = rest[1..].find('\'').map_or(rest.len(), |e| e + 2);
            out.push_str("' '");
            i += end;
        } else {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Expands a `use` tree (`a::{b, c::{d, self}}`) into full paths.
fn expand_use(tree: &str) -> Vec<String> {
    // Renames (`x as y`) name the same item.
    let mut tree = tree.to_string();
    while let Some(i) = tree.find(" as ") {
        let rest = &tree[i + 4..];
        let name = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        tree.replace_range(i..i + 4 + name, "");
    }
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| {
            expand_use(p)
                .into_iter()
                .map(|s| match s.as_str() {
                    "self" => prefix.trim_end_matches("::").to_string(),
                    _ => format!("{prefix}{s}"),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Paths written in code: `a::b::c` runs of identifiers.
fn inline_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !is_ident(chars[i]) || (i > 0 && (is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        loop {
            while end < chars.len() && is_ident(chars[end]) {
                end += 1;
            }
            if end + 2 < chars.len()
                && chars[end] == ':'
                && chars[end + 1] == ':'
                && is_ident(chars[end + 2])
            {
                end += 2;
            } else {
                break;
            }
        }
        let path: String = chars[start..end].iter().collect();
        if path.contains("::") {
            paths.push(path);
        }
        i = end.max(i + 1);
    }
    paths
}

/// The module a path names, as far as it is a module of this crate, from
/// a file of module `here` whose child modules are `children`.
fn resolve(
    path: &str,
    here: &[String],
    children: &BTreeSet<String>,
    aliases: &BTreeMap<String, Vec<String>>,
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<String> = match segments[0] {
        "crate" => {
            segments.remove(0);
            Vec::new()
        }
        "super" => {
            let mut b = here.to_vec();
            while segments.first() == Some(&"super") {
                segments.remove(0);
                b.pop()?;
            }
            b
        }
        "self" => {
            segments.remove(0);
            here.to_vec()
        }
        first if children.contains(first) => here.to_vec(),
        first => match aliases.get(first) {
            Some(target) => {
                segments.remove(0);
                target.clone()
            }
            None => return None,
        },
    };
    let mut found = modules.contains(&base).then(|| base.clone());
    for s in segments {
        base.push(s.to_string());
        if modules.contains(&base) {
            found = Some(base.clone());
        } else {
            break;
        }
    }
    found
}

/// File-to-file dependencies (by module path).
fn dependencies(files: &BTreeMap<PathBuf, File>) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules: BTreeSet<Vec<String>> = files.values().map(|f| f.module.clone()).collect();
    let mut graph = BTreeMap::new();
    for file in files.values() {
        let code = code_only(&file.text);
        let children: BTreeSet<String> = modules
            .iter()
            .filter(|m| m.len() == file.module.len() + 1 && m.starts_with(&file.module))
            .map(|m| m.last().expect("child").clone())
            .collect();
        let mut uses = Vec::new();
        for (i, _) in code.match_indices("use ") {
            if i > 0 && is_ident(code[..i].chars().last().unwrap_or(' ')) {
                continue;
            }
            let end = code[i..].find(';').map_or(code.len(), |e| i + e);
            uses.extend(expand_use(&code[i + 4..end]));
        }
        let mut aliases = BTreeMap::new();
        for u in &uses {
            let none = BTreeMap::new();
            if let Some(m) = resolve(u, &file.module, &children, &none, &modules) {
                if let Some(last) = u.rsplit("::").next() {
                    if m.last().map(String::as_str) == Some(last) {
                        aliases.insert(last.to_string(), m);
                    }
                }
            }
        }
        let mut deps = BTreeSet::new();
        for path in uses.iter().cloned().chain(inline_paths(&code)) {
            if let Some(m) = resolve(&path, &file.module, &children, &aliases, &modules) {
                // Ownership: a module's own submodules are not dependencies.
                if !m.starts_with(&file.module) {
                    deps.insert(m);
                }
            }
        }
        graph.insert(file.module.clone(), deps);
    }
    graph
}

/// Strongly connected sets of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let Some((w, _)) = s.graph.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[w].min(s.low[v]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.index[w].min(s.low[v]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(name(w));
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

#[test]
fn no_import_cycles_between_files() {
    let graph = dependencies(&source_files());
    // The checker itself must see the dependencies it claims to judge.
    let trainer = vec!["engine".to_string(), "trainer".to_string()];
    assert!(
        graph
            .get(&trainer)
            .is_some_and(|d| d.contains(&vec!["config".to_string()])),
        "the checker lost track of engine::trainer's use of crate::config"
    );
    let found = cycles(&graph);
    let described: Vec<String> = found.iter().map(|c| c.join(" ↔ ")).collect();
    assert!(
        found.is_empty(),
        "import cycles between files:\n  {}",
        described.join("\n  ")
    );
}

#[test]
fn the_cycle_checker_finds_a_cycle() {
    let mut files = BTreeMap::new();
    let file = |module: &[&str], text: &str| File {
        module: module.iter().map(|s| s.to_string()).collect(),
        text: text.into(),
    };
    files.insert(
        "a.rs".into(),
        file(&["a"], "use crate::b::{self, Thing as T};"),
    );
    files.insert("b.rs".into(), file(&["b"], "fn f() { crate::c::g() }"));
    // c uses its child d, and d uses c: ownership, not a cycle. Paths in
    // comments and strings do not count.
    let c = "mod d;\nuse d::H;\n// crate::a in a comment\nconst S: &str = \"crate::a\";";
    files.insert("c/mod.rs".into(), file(&["c"], c));
    files.insert("c/d.rs".into(), file(&["c", "d"], "fn f() { super::g() }"));
    assert_eq!(cycles(&dependencies(&files)), Vec::<Vec<String>>::new());
    // d reaching a closes a → b → c::d → a.
    files.insert("b.rs".into(), file(&["b"], "fn f() { crate::c::d::h() }"));
    files.insert(
        "c/d.rs".into(),
        file(&["c", "d"], "use super::super::a::X;"),
    );
    let found = cycles(&dependencies(&files));
    assert_eq!(found, vec![vec!["a", "b", "c::d"]], "{found:?}");
}

#[test]
fn no_long_files_without_a_reason() {
    let long: Vec<String> = source_files()
        .iter()
        .filter(|(_, f)| {
            f.text.lines().count() > MAX_LINES
                && !f.text.contains("\n//! Long:")
                && !f.text.starts_with("//! Long:")
        })
        .map(|(p, f)| format!("src/{} ({} lines)", p.display(), f.text.lines().count()))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines without a `//! Long:` reason in their module doc: {}",
        long.join(", ")
    );
}

#[test]
fn the_binary_defines_no_vtable_of_the_classes_the_shims_declare() {
    // This test's own executable, which links the shims through this use.
    type Join = fn(&meltr_tui::dist::Rendezvous) -> anyhow::Result<meltr_tui::dist::ProcessGroup>;
    let joins: [Join; 2] = [
        meltr_tui::dist::ProcessGroup::gloo,
        meltr_tui::dist::ProcessGroup::nccl,
    ];
    std::hint::black_box(joins);
    let binary = std::env::current_exe().expect("the test's path");
    let out = std::process::Command::new("nm")
        .arg("-C")
        .arg("--defined-only")
        .arg(&binary)
        .output()
        .expect("nm (binutils) runs");
    assert!(
        out.status.success(),
        "nm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let symbols = String::from_utf8_lossy(&out.stdout);
    // The shims' objects are in: the check sees the symbols they define.
    assert!(
        symbols.contains("meltr_pg_gloo_new"),
        "the process-group shim is not linked"
    );
    let own: Vec<&str> = symbols
        .lines()
        .filter(|l| {
            l.contains("vtable for c10d::ProcessGroupGloo")
                || l.contains("vtable for c10d::ProcessGroupNCCL")
        })
        .collect();
    assert!(
        own.is_empty(),
        "the binary defines libtorch's vtables: {own:?}"
    );
}
