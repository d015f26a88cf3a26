//! `cargo xtask cycles`: checks that in every crate of the workspace no module imports a
//! module that imports it back, directly or through a longer cycle.
//!
//! Each workspace member's `src/` is read file by file (`lib.rs`/`main.rs` is the crate root,
//! `foo.rs` and `foo/mod.rs` are `foo`, `foo/bar.rs` is `foo::bar`). A small tokenizer skips
//! comments (doc comments too), string, raw string and char literals; the references it then
//! finds are `use` trees (`use crate::{a, b::{c, D}}`, `use super::x`), `crate::a::b` and
//! `super::x` paths anywhere in code (the longest prefix that is a module counts), and names
//! the crate root imports from a module (`pub use error::{Error, Result};` in `lib.rs` makes
//! `crate::Error` a reference to `error`). Items under `#[cfg(test)]` (the `mod tests { .. }`
//! blocks, a `#[cfg(test)] mod tests;` file) are not counted, and neither is a reference
//! between a module and its own ancestor or descendant: a parent and its children are one
//! unit. Every strongly connected component of more than one module is reported, with one
//! `file:line` for each edge inside it.
//!
//! It is deliberately not a Rust parser: macros are not expanded, `#[path]` attributes and
//! glob re-exports from the root are not followed, `src/bin/` is not read, and when a package
//! has both `lib.rs` and `main.rs` only the library is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Checks the workspace at [`crate::project_root`], printing every cycle; fails if there is one.
pub(crate) fn run() -> anyhow::Result<()> {
    let root = crate::project_root();
    eprintln!("$ cargo xtask cycles");
    let report = check(&root)?;
    if report.cycles.is_empty() {
        println!("no module cycles in {} crates", report.crates_checked);
        return Ok(());
    }
    for cycle in &report.cycles {
        print!("{cycle}");
    }
    let crates: BTreeSet<&str> = report.cycles.iter().map(|cycle| cycle.crate_name.as_str()).collect();
    bail!(
        "{} module cycle(s) in {} of {} crates ({}): a module must not import a module that imports it back",
        report.cycles.len(),
        crates.len(),
        report.crates_checked,
        crates.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// What [`check`] found in a workspace.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) crates_checked: usize,
    pub(crate) cycles: Vec<Cycle>,
}

/// A strongly connected component of more than one module of one crate.
#[derive(Debug)]
pub(crate) struct Cycle {
    pub(crate) crate_name: String,
    /// Module paths, sorted (`""` is the crate root, which is never part of a cycle).
    pub(crate) modules: Vec<String>,
    /// Every edge between two modules of the component, sorted by (from, to).
    pub(crate) edges: Vec<Edge>,
}

/// `from` refers to `to`; `file:line` is the first place that does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edge {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) file: PathBuf,
    pub(crate) line: usize,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: cycle between {}", self.crate_name, self.modules.join(", "))?;
        let width = self.edges.iter().map(|edge| edge.from.len() + edge.to.len() + 4).max().unwrap_or(0);
        for edge in &self.edges {
            let arrow = format!("{} -> {}", edge.from, edge.to);
            writeln!(f, "  {arrow:width$}  {}:{}", edge.file.display(), edge.line)?;
        }
        Ok(())
    }
}

/// Checks every member of the workspace whose root manifest is `root/Cargo.toml`; the files in
/// the report are relative to `root`.
pub(crate) fn check(root: &Path) -> anyhow::Result<Report> {
    let manifest_path = root.join("Cargo.toml");
    let manifest =
        std::fs::read_to_string(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
    let mut crates_checked = 0;
    let mut cycles = Vec::new();
    for member in workspace_members(root, &manifest)? {
        let member_dir = root.join(&member);
        let src = member_dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let crate_name = package_name(&member_dir)?.unwrap_or_else(|| member.clone());
        let graph = CrateGraph::read(root, &src)?;
        crates_checked += 1;
        for modules in graph.components() {
            let members: BTreeSet<&String> = modules.iter().collect();
            let edges = graph
                .edges
                .iter()
                .filter(|edge| members.contains(&edge.from) && members.contains(&edge.to))
                .cloned()
                .collect();
            cycles.push(Cycle { crate_name: crate_name.clone(), modules, edges });
        }
    }
    Ok(Report { crates_checked, cycles })
}

/// The member directories listed in `[workspace] members` (a trailing `/*` is expanded).
fn workspace_members(root: &Path, manifest: &str) -> anyhow::Result<Vec<String>> {
    let Some(start) = manifest.find("\nmembers").or_else(|| manifest.starts_with("members").then_some(0)) else {
        bail!("expected a `members = [..]` list in the workspace Cargo.toml, found none");
    };
    let rest = &manifest[start..];
    let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else {
        bail!("expected `members = [..]` in the workspace Cargo.toml, found an unclosed list");
    };
    let list: String = rest[open + 1..close].lines().map(|line| line.split('#').next().unwrap_or("")).collect();
    let mut members = Vec::new();
    for entry in list.split(',').map(|entry| entry.trim().trim_matches('"')).filter(|entry| !entry.is_empty()) {
        if let Some(parent) = entry.strip_suffix("/*") {
            let dir = root.join(parent);
            let mut expanded: Vec<String> = std::fs::read_dir(&dir)
                .with_context(|| format!("listing {}", dir.display()))?
                .filter_map(Result::ok)
                .filter(|child| child.path().join("Cargo.toml").is_file())
                .map(|child| format!("{parent}/{}", child.file_name().to_string_lossy()))
                .collect();
            expanded.sort();
            members.extend(expanded);
        } else {
            members.push(entry.to_owned());
        }
    }
    Ok(members)
}

/// `name = ".."` from the `[package]` table of `dir/Cargo.toml`, if there is one.
fn package_name(dir: &Path) -> anyhow::Result<Option<String>> {
    let path = dir.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(value) = line.strip_prefix("name")
            && let Some(value) = value.trim_start().strip_prefix('=')
        {
            return Ok(Some(value.trim().trim_matches('"').to_owned()));
        }
    }
    Ok(None)
}

/// The module dependency graph of one crate.
#[derive(Debug)]
struct CrateGraph {
    modules: BTreeSet<String>,
    /// One edge per (from, to), sorted, without edges between a module and its ancestors or
    /// descendants and without test-only modules.
    edges: Vec<Edge>,
}

impl CrateGraph {
    /// Reads every `.rs` file under `src`; edge files are relative to `root`.
    fn read(root: &Path, src: &Path) -> anyhow::Result<Self> {
        let mut files = Vec::new();
        collect_rust_files(src, src, &mut files)?;
        let has_lib = src.join("lib.rs").is_file();
        let mut parsed = Vec::new();
        for path in files {
            let relative = path.strip_prefix(src).unwrap_or(&path);
            if has_lib && relative == Path::new("main.rs") {
                continue;
            }
            let module = module_path(relative);
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let display = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            parsed.push((display, module.clone(), parse_file(&module, &text)));
        }
        let modules: BTreeSet<String> = parsed.iter().map(|(_, module, _)| join(module)).collect();
        let mut test_only: Vec<String> = Vec::new();
        for (_, module, file) in &parsed {
            test_only.extend(file.test_modules.iter().map(|module| join(module)));
            if file.test_only {
                test_only.push(join(module));
            }
        }
        let is_test_only = |module: &str| test_only.iter().any(|test| is_ancestor_or_self(test, module));

        let resolver = Resolver::new(&modules, parsed.iter().find(|(_, module, _)| module.is_empty()).map(|p| &p.2));
        let mut first: BTreeMap<(String, String), (PathBuf, usize)> = BTreeMap::new();
        for (display, module, file) in &parsed {
            let from = join(module);
            if is_test_only(&from) {
                continue;
            }
            for reference in &file.references {
                let Some(to) = resolver.resolve(&reference.context, &reference.segments) else { continue };
                if to == from || is_ancestor_or_self(&to, &from) || is_ancestor_or_self(&from, &to) || is_test_only(&to)
                {
                    continue;
                }
                first.entry((from.clone(), to)).or_insert_with(|| (display.clone(), reference.line));
            }
        }
        let edges = first.into_iter().map(|((from, to), (file, line))| Edge { from, to, file, line }).collect();
        Ok(Self { modules, edges })
    }

    /// The strongly connected components of more than one module (Tarjan), each sorted, in order
    /// of their first module.
    fn components(&self) -> Vec<Vec<String>> {
        let index_of: BTreeMap<&str, usize> =
            self.modules.iter().enumerate().map(|(index, module)| (module.as_str(), index)).collect();
        let names: Vec<&String> = self.modules.iter().collect();
        let mut successors = vec![Vec::new(); names.len()];
        for edge in &self.edges {
            if let (Some(&from), Some(&to)) = (index_of.get(edge.from.as_str()), index_of.get(edge.to.as_str())) {
                successors[from].push(to);
            }
        }
        let mut tarjan = Tarjan {
            successors: &successors,
            index: vec![None; names.len()],
            low: vec![0; names.len()],
            stack: Vec::new(),
            on_stack: vec![false; names.len()],
            next_index: 0,
            components: Vec::new(),
        };
        for node in 0..names.len() {
            if tarjan.index[node].is_none() {
                tarjan.visit(node);
            }
        }
        let mut components: Vec<Vec<String>> = tarjan
            .components
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| {
                let mut modules: Vec<String> = component.into_iter().map(|node| names[node].clone()).collect();
                modules.sort();
                modules
            })
            .collect();
        components.sort();
        components
    }
}

struct Tarjan<'a> {
    successors: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    stack: Vec<usize>,
    on_stack: Vec<bool>,
    next_index: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn visit(&mut self, node: usize) {
        self.index[node] = Some(self.next_index);
        self.low[node] = self.next_index;
        self.next_index += 1;
        self.stack.push(node);
        self.on_stack[node] = true;
        for &next in &self.successors[node] {
            match self.index[next] {
                None => {
                    self.visit(next);
                    self.low[node] = self.low[node].min(self.low[next]);
                }
                Some(index) if self.on_stack[next] => self.low[node] = self.low[node].min(index),
                Some(_) => {}
            }
        }
        if Some(self.low[node]) == self.index[node] {
            let mut component = Vec::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack[member] = false;
                component.push(member);
                if member == node {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

/// Turns a path as written (`crate::a::b::C`, `super::x`) into the module it refers to.
struct Resolver<'a> {
    modules: &'a BTreeSet<String>,
    /// Names the crate root imports, and the module each comes from.
    root_imports: BTreeMap<String, String>,
}

impl<'a> Resolver<'a> {
    fn new(modules: &'a BTreeSet<String>, root: Option<&ParsedFile>) -> Self {
        let mut resolver = Self { modules, root_imports: BTreeMap::new() };
        let mut root_imports = BTreeMap::new();
        for import in root.map(|file| file.root_imports.as_slice()).unwrap_or_default() {
            let mut segments = import.segments.clone();
            if segments.first().is_some_and(|first| first != "crate" && first != "self" && first != "super") {
                segments.insert(0, "crate".to_owned());
            }
            let Some(absolute) = absolute_path(&[], &segments) else { continue };
            let module = resolver.longest_module(&absolute);
            if !module.is_empty() {
                root_imports.insert(import.name.clone(), module);
            }
        }
        resolver.root_imports = root_imports;
        resolver
    }

    fn resolve(&self, context: &[String], segments: &[String]) -> Option<String> {
        let absolute = absolute_path(context, segments)?;
        let module = self.longest_module(&absolute);
        if module.is_empty()
            && let Some(first) = absolute.first()
            && let Some(imported_from) = self.root_imports.get(first)
        {
            return Some(imported_from.clone());
        }
        Some(module)
    }

    /// The longest prefix of `path` that is a module of the crate (the root, `""`, at worst).
    fn longest_module(&self, path: &[String]) -> String {
        (1..=path.len())
            .rev()
            .map(|len| join(&path[..len]))
            .find(|prefix| self.modules.contains(prefix))
            .unwrap_or_default()
    }
}

/// `segments` (starting with `crate`, `self` or `super`) as a path from the crate root, seen
/// from module `context`; `None` if it is not such a path or climbs above the root.
fn absolute_path(context: &[String], segments: &[String]) -> Option<Vec<String>> {
    let mut path: Vec<String> = match segments.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self" | "super") => context.to_vec(),
        _ => return None,
    };
    let mut rest = if segments[0] == "crate" { &segments[1..] } else { segments };
    while let Some(first) = rest.first() {
        match first.as_str() {
            "self" => {}
            "super" => {
                path.pop()?;
            }
            _ => break,
        }
        rest = &rest[1..];
    }
    path.extend(rest.iter().filter(|segment| *segment != "self").cloned());
    Some(path)
}

fn join(path: &[String]) -> String {
    path.join("::")
}

/// Whether `ancestor` is `module` or one of its ancestors (`""` is everyone's).
fn is_ancestor_or_self(ancestor: &str, module: &str) -> bool {
    ancestor.is_empty()
        || module == ancestor
        || module.strip_prefix(ancestor).is_some_and(|rest| rest.starts_with("::"))
}

/// The module a file under `src/` is: `lib.rs`/`main.rs` the root, `foo.rs` and `foo/mod.rs`
/// `foo`, `foo/bar.rs` `foo::bar`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> =
        relative.with_extension("").components().map(|part| part.as_os_str().to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|last| last == "mod") || (parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main"))
    {
        parts.pop();
    }
    parts
}

fn collect_rust_files(src: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path != src.join("bin") {
                collect_rust_files(src, &path, files)?;
            }
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// What one file refers to.
#[derive(Debug, Default)]
struct ParsedFile {
    references: Vec<Reference>,
    /// Names imported at the top level of the file (only used for the crate root).
    root_imports: Vec<Import>,
    /// Child modules declared `#[cfg(test)] mod name;`, as full module paths.
    test_modules: Vec<Vec<String>>,
    /// The file starts with `#![cfg(test)]`.
    test_only: bool,
}

/// A path starting with `crate`, `self` or `super`, written in module `context` (the file's
/// module or an inline module inside it).
#[derive(Debug)]
struct Reference {
    context: Vec<String>,
    segments: Vec<String>,
    line: usize,
}

/// `use path::to::Item as name;` at the top level of a file.
#[derive(Debug)]
struct Import {
    segments: Vec<String>,
    name: String,
}

fn parse_file(module: &[String], text: &str) -> ParsedFile {
    let tokens = tokenize(text);
    let mut file = ParsedFile::default();
    // Inline `mod name { .. }` blocks we are in, with the brace depth outside each.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let context = |inline: &[(String, usize)]| {
        let mut context = module.to_vec();
        context.extend(inline.iter().map(|(name, _)| name.clone()));
        context
    };
    while i < tokens.len() {
        match &tokens[i].token {
            Token::Punct('#') if is_cfg_test(&tokens, i + 1) => {
                if depth == 0 && tokens.get(i + 1).is_some_and(|token| token.token == Token::Punct('!')) {
                    file.test_only = true;
                    return file;
                }
                let (end, declared) = skip_item(&tokens, attribute_end(&tokens, i + 1));
                if let Some(name) = declared {
                    let mut path = context(&inline);
                    path.push(name);
                    file.test_modules.push(path);
                }
                i = end;
                continue;
            }
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, outside)| *outside == depth) {
                    inline.pop();
                }
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some(Token::Ident(name)), Some(Token::Punct('{'))) =
                    (tokens.get(i + 1).map(|t| &t.token), tokens.get(i + 2).map(|t| &t.token))
                {
                    inline.push((name.clone(), depth));
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            Token::Ident(word) if word == "use" => {
                let mut leaves = Vec::new();
                let mut j = i + 1;
                parse_use_tree(&tokens, &mut j, &mut Vec::new(), &mut leaves);
                let context = context(&inline);
                for leaf in leaves {
                    if inline.is_empty() && depth == 0 {
                        let name = leaf.rename.clone().or_else(|| leaf.segments.last().cloned());
                        if let Some(name) = name.filter(|name| name != "_" && name != "self") {
                            file.root_imports.push(Import { segments: leaf.segments.clone(), name });
                        }
                    }
                    if leaf.segments.first().is_some_and(|first| is_path_keyword(first)) {
                        file.references.push(Reference {
                            context: context.clone(),
                            segments: leaf.segments,
                            line: leaf.line,
                        });
                    }
                }
                i = j.max(i + 1);
                continue;
            }
            Token::Ident(word)
                if is_path_keyword(word)
                    && tokens.get(i + 1).is_some_and(|token| token.token == Token::PathSep)
                    && (i == 0 || tokens[i - 1].token != Token::PathSep) =>
            {
                let mut segments = vec![word.clone()];
                let mut line = tokens[i].line;
                let mut j = i + 1;
                while tokens.get(j).is_some_and(|token| token.token == Token::PathSep) {
                    let Some(Spanned { token: Token::Ident(segment), line: segment_line }) = tokens.get(j + 1) else {
                        break;
                    };
                    segments.push(segment.clone());
                    line = *segment_line;
                    j += 2;
                }
                file.references.push(Reference { context: context(&inline), segments, line });
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    file
}

fn is_path_keyword(word: &str) -> bool {
    matches!(word, "crate" | "self" | "super")
}

/// Whether the tokens at `start` are `[cfg(test)]` or `![cfg(test)]`.
fn is_cfg_test(tokens: &[Spanned], start: usize) -> bool {
    let start = if tokens.get(start).is_some_and(|token| token.token == Token::Punct('!')) { start + 1 } else { start };
    let expected = [
        Token::Punct('['),
        Token::Ident("cfg".to_owned()),
        Token::Punct('('),
        Token::Ident("test".to_owned()),
        Token::Punct(')'),
        Token::Punct(']'),
    ];
    expected.iter().enumerate().all(|(offset, token)| tokens.get(start + offset).is_some_and(|t| t.token == *token))
}

/// The index just past the `]` closing the attribute whose `[` is at `open`.
fn attribute_end(tokens: &[Spanned], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while let Some(spanned) = tokens.get(i) {
        match spanned.token {
            Token::Punct('[') => depth += 1,
            Token::Punct(']') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Skips the item starting at `start` (after its `#[cfg(test)]`): further attributes, then up to
/// a `;` or the end of its first `{ .. }` block. Returns the index after it, and the module name
/// if the item is `mod name;`.
fn skip_item(tokens: &[Spanned], start: usize) -> (usize, Option<String>) {
    let mut i = start;
    while tokens.get(i).is_some_and(|token| token.token == Token::Punct('#')) {
        i = attribute_end(tokens, i + 1);
    }
    let item_start = i;
    let mut nesting = 0usize;
    while let Some(spanned) = tokens.get(i) {
        match spanned.token {
            Token::Punct('(' | '[') => nesting += 1,
            Token::Punct(')' | ']') => nesting = nesting.saturating_sub(1),
            Token::Punct(';') if nesting == 0 => {
                let words: Vec<&Token> =
                    tokens[item_start..i].iter().map(|t| &t.token).filter(|t| matches!(t, Token::Ident(_))).collect();
                let declared = match words.as_slice() {
                    [.., Token::Ident(keyword), Token::Ident(name)] if keyword == "mod" => Some(name.clone()),
                    _ => None,
                };
                return (i + 1, declared);
            }
            Token::Punct('{') if nesting == 0 => {
                let mut braces = 0usize;
                while let Some(spanned) = tokens.get(i) {
                    match spanned.token {
                        Token::Punct('{') => braces += 1,
                        Token::Punct('}') => {
                            braces -= 1;
                            if braces == 0 {
                                return (i + 1, None);
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                return (i, None);
            }
            _ => {}
        }
        i += 1;
    }
    (i, None)
}

/// One path a `use` tree imports.
#[derive(Debug)]
struct UseLeaf {
    segments: Vec<String>,
    rename: Option<String>,
    line: usize,
}

/// Parses the use tree at `*i` (after `use`, or inside a `{ .. }` group) with the segments
/// written before it in `prefix`, leaving `*i` after the tree (at the `;` for the outermost).
fn parse_use_tree(tokens: &[Spanned], i: &mut usize, prefix: &mut Vec<String>, leaves: &mut Vec<UseLeaf>) {
    let depth = prefix.len();
    let mut line = tokens.get(*i).map_or(0, |token| token.line);
    if tokens.get(*i).is_some_and(|token| token.token == Token::PathSep) {
        *i += 1;
    }
    loop {
        match tokens.get(*i).map(|token| &token.token) {
            Some(Token::Ident(segment)) => {
                prefix.push(segment.clone());
                line = tokens[*i].line;
                *i += 1;
                if tokens.get(*i).is_some_and(|token| token.token == Token::PathSep) {
                    *i += 1;
                    continue;
                }
                let mut rename = None;
                if matches!(tokens.get(*i).map(|token| &token.token), Some(Token::Ident(word)) if word == "as") {
                    if let Some(Token::Ident(name)) = tokens.get(*i + 1).map(|token| &token.token) {
                        rename = Some(name.clone());
                    }
                    *i += 2;
                }
                leaves.push(UseLeaf { segments: prefix.clone(), rename, line });
                break;
            }
            Some(Token::Punct('*')) => {
                *i += 1;
                leaves.push(UseLeaf { segments: prefix.clone(), rename: Some("_".to_owned()), line });
                break;
            }
            Some(Token::Punct('{')) => {
                *i += 1;
                loop {
                    match tokens.get(*i).map(|token| &token.token) {
                        None | Some(Token::Punct(';')) => break,
                        Some(Token::Punct('}')) => {
                            *i += 1;
                            break;
                        }
                        Some(Token::Punct(',')) => *i += 1,
                        _ => {
                            let before = *i;
                            parse_use_tree(tokens, i, prefix, leaves);
                            if *i == before {
                                *i += 1;
                            }
                        }
                    }
                }
                break;
            }
            _ => break,
        }
    }
    prefix.truncate(depth);
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
    /// A string, char or number literal, or a lifetime: never part of a path.
    Literal,
}

#[derive(Debug)]
struct Spanned {
    token: Token,
    line: usize,
}

/// Splits Rust source into identifiers, `::` and punctuation, dropping whitespace, comments
/// (line, nested block and doc comments) and the contents of literals.
fn tokenize(text: &str) -> Vec<Spanned> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |index: usize| chars.get(index).copied();
    while let Some(c) = at(i) {
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == Some('/') {
            while at(i).is_some_and(|c| c != '\n') {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == Some('*') {
            let mut nesting = 0usize;
            while let Some(c) = at(i) {
                if c == '/' && at(i + 1) == Some('*') {
                    nesting += 1;
                    i += 2;
                } else if c == '*' && at(i + 1) == Some('/') {
                    nesting -= 1;
                    i += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c == '\n');
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_quoted(&chars, i + 1, '"', &mut line);
            tokens.push(Spanned { token: Token::Literal, line: start_line });
        } else if c == '\'' {
            if at(i + 1) == Some('\\') {
                i = skip_quoted(&chars, i + 1, '\'', &mut line);
            } else if at(i + 2) == Some('\'') {
                i += 3;
            } else {
                // A lifetime or label: `'a`.
                i += 1;
                while at(i).is_some_and(is_ident_char) {
                    i += 1;
                }
            }
            tokens.push(Spanned { token: Token::Literal, line: start_line });
        } else if c.is_ascii_digit() {
            while at(i).is_some_and(is_ident_char) {
                i += 1;
            }
            tokens.push(Spanned { token: Token::Literal, line: start_line });
        } else if is_ident_char(c) {
            let start = i;
            while at(i).is_some_and(is_ident_char) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            if raw_prefix && matches!(at(i), Some('"' | '#')) {
                let mut hashes = 0;
                while at(i + hashes) == Some('#') {
                    hashes += 1;
                }
                if at(i + hashes) == Some('"') {
                    i = skip_raw_string(&chars, i + hashes + 1, hashes, &mut line);
                    tokens.push(Spanned { token: Token::Literal, line: start_line });
                    continue;
                }
                if word == "r" && hashes == 1 && at(i + 1).is_some_and(is_ident_char) {
                    // A raw identifier: `r#type`.
                    let start = i + 1;
                    i = start;
                    while at(i).is_some_and(is_ident_char) {
                        i += 1;
                    }
                    tokens.push(Spanned { token: Token::Ident(chars[start..i].iter().collect()), line: start_line });
                    continue;
                }
            }
            if matches!(word.as_str(), "b" | "c") && at(i) == Some('"') {
                i = skip_quoted(&chars, i + 1, '"', &mut line);
                tokens.push(Spanned { token: Token::Literal, line: start_line });
            } else if word == "b" && at(i) == Some('\'') {
                i = skip_quoted(&chars, i + 1, '\'', &mut line);
                tokens.push(Spanned { token: Token::Literal, line: start_line });
            } else {
                tokens.push(Spanned { token: Token::Ident(word), line: start_line });
            }
        } else if c == ':' && at(i + 1) == Some(':') {
            tokens.push(Spanned { token: Token::PathSep, line });
            i += 2;
        } else {
            tokens.push(Spanned { token: Token::Punct(c), line });
            i += 1;
        }
    }
    tokens
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The index after the `quote` closing a literal whose contents start at `i`, honouring `\`.
fn skip_quoted(chars: &[char], mut i: usize, quote: char, line: &mut usize) -> usize {
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => {
                *line += usize::from(chars.get(i + 1) == Some(&'\n'));
                i += 2;
            }
            c if c == quote => return i + 1,
            c => {
                *line += usize::from(c == '\n');
                i += 1;
            }
        }
    }
    i
}

/// The index after the `"` and `hashes` `#`s closing a raw string whose contents start at `i`.
fn skip_raw_string(chars: &[char], mut i: usize, hashes: usize, line: &mut usize) -> usize {
    while let Some(&c) = chars.get(i) {
        if c == '"' && (1..=hashes).all(|offset| chars.get(i + offset) == Some(&'#')) {
            return i + 1 + hashes;
        }
        *line += usize::from(c == '\n');
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A workspace with one member crate `demo`, written to a fresh directory under the system
    /// temp dir and removed on drop.
    struct TempCrate {
        root: PathBuf,
    }

    impl TempCrate {
        fn new(files: &[(&str, &str)]) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let root = std::env::temp_dir().join(format!(
                "xtask-cycles-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&root);
            let write = |path: &str, text: &str| {
                let path = root.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            };
            write("Cargo.toml", "[workspace]\nmembers = [\n    \"demo\", # the only one\n]\n");
            write("demo/Cargo.toml", "[package]\nname = \"demo\"\nversion = \"0.1.0\"\n");
            for (path, text) in files {
                write(&format!("demo/src/{path}"), text);
            }
            Self { root }
        }

        fn cycles(&self) -> Vec<Cycle> {
            let report = check(&self.root).unwrap();
            assert_eq!(report.crates_checked, 1);
            report.cycles
        }

        fn edges(&self) -> Vec<(String, String)> {
            let graph = CrateGraph::read(&self.root, &self.root.join("demo/src")).unwrap();
            graph.edges.into_iter().map(|edge| (edge.from, edge.to)).collect()
        }
    }

    impl Drop for TempCrate {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn edge(from: &str, to: &str, file: &str, line: usize) -> Edge {
        Edge { from: from.to_owned(), to: to.to_owned(), file: PathBuf::from(file), line }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(from, to)| ((*from).to_owned(), (*to).to_owned())).collect()
    }

    #[test]
    fn two_modules_using_each_other_through_use_crate_are_a_cycle() {
        let demo = TempCrate::new(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "//! A.\n\nuse crate::b::Thing;\n"),
            ("b.rs", "use crate::a;\nuse crate::c::Other;\n"),
            ("c.rs", "pub struct Other;\n"),
        ]);
        let cycles = demo.cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].crate_name, "demo");
        assert_eq!(cycles[0].modules, ["a", "b"]);
        assert_eq!(cycles[0].edges, [edge("a", "b", "demo/src/a.rs", 3), edge("b", "a", "demo/src/b.rs", 1)]);
        let printed = cycles[0].to_string();
        assert!(printed.starts_with("demo: cycle between a, b\n"), "{printed}");
        assert!(printed.contains("a -> b  demo/src/a.rs:3"), "{printed}");
    }

    #[test]
    fn a_name_the_root_re_exports_from_a_module_is_an_edge_to_that_module() {
        let demo = TempCrate::new(&[
            ("lib.rs", "mod error;\nmod name;\npub use error::{Error, Result};\npub use name::PackageName as Name;\n"),
            ("error.rs", "use crate::{Name, Version};\npub enum Error { Name(Name) }\n"),
            ("name.rs", "pub struct PackageName;\nfn parse() -> crate::Result<PackageName> { todo!() }\n"),
        ]);
        let cycles = demo.cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].modules, ["error", "name"]);
        assert_eq!(
            cycles[0].edges,
            [edge("error", "name", "demo/src/error.rs", 1), edge("name", "error", "demo/src/name.rs", 2)]
        );
    }

    #[test]
    fn a_three_module_cycle_through_groups_paths_and_super_is_found() {
        let demo = TempCrate::new(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\n"),
            ("a.rs", "use crate::{d, b::{self as bee, Thing}};\n"),
            ("b.rs", "fn f() {\n    let x = crate::c::make::<u8>();\n}\n"),
            ("c.rs", "use super::a::{Item};\n"),
            ("d.rs", "pub fn f() {}\n"),
        ]);
        let cycles = demo.cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].modules, ["a", "b", "c"]);
        assert_eq!(
            cycles[0].edges,
            [
                edge("a", "b", "demo/src/a.rs", 1),
                edge("b", "c", "demo/src/b.rs", 2),
                edge("c", "a", "demo/src/c.rs", 1),
            ]
        );
        assert_eq!(demo.edges(), pairs(&[("a", "b"), ("a", "d"), ("b", "c"), ("c", "a")]));
    }

    #[test]
    fn a_parent_and_its_children_are_one_unit() {
        let demo = TempCrate::new(&[
            ("lib.rs", "mod node;\nmod other;\npub use node::Node;\n"),
            (
                "node/mod.rs",
                "mod builder;\nuse builder::Builder;\nuse crate::node::builder::Config;\npub struct Node;\n",
            ),
            ("node/builder.rs", "use super::Node;\nuse crate::Node as Root;\nuse crate::other::Thing;\n"),
            ("other.rs", "pub struct Thing;\n"),
        ]);
        assert!(demo.cycles().is_empty());
        assert_eq!(demo.edges(), pairs(&[("node::builder", "other")]));
        let demo = TempCrate::new(&[
            ("lib.rs", "mod node;\n"),
            ("node/mod.rs", "mod builder;\nuse crate::node::builder::Config;\n"),
            ("node/builder.rs", "use super::Node;\nuse crate::node::Node;\n"),
        ]);
        assert!(demo.cycles().is_empty());
        assert!(demo.edges().is_empty());
    }

    #[test]
    fn references_in_comments_strings_and_test_code_are_not_counted() {
        let demo = TempCrate::new(&[
            ("lib.rs", "mod a;\nmod b;\n#[cfg(test)]\nmod tests;\n"),
            ("a.rs", "use crate::b::Thing;\n"),
            (
                "b.rs",
                concat!(
                    "//! See [`crate::a`].\n",
                    "/// Not [`crate::a::Item`].\n",
                    "// use crate::a;\n",
                    "/* crate::a::x /* nested */ crate::a */\n",
                    "fn f<'a>(x: &'a str) -> char { let _ = (\"crate::a::X\", r#\"crate::a\"#, b\"crate::a\"); '\"' }\n",
                    "#[cfg(test)]\n",
                    "mod tests {\n",
                    "    use crate::a::Thing;\n",
                    "    fn g() { crate::a::f(); }\n",
                    "}\n",
                    "#[cfg(test)]\n",
                    "use crate::a::Helper;\n",
                    "pub fn after() -> crate::c::Z { todo!() }\n",
                ),
            ),
            ("c.rs", "pub struct Z;\n"),
            ("tests.rs", "use crate::a;\nuse crate::b;\n"),
        ]);
        assert!(demo.cycles().is_empty());
        // Still counted after the comments, literals and test blocks: `a -> b` and `b -> c`.
        assert_eq!(demo.edges(), pairs(&[("a", "b"), ("b", "c")]));
    }

    #[test]
    fn tokenizer_drops_comments_and_literals_and_counts_lines() {
        let tokens = tokenize("a /* x\n y */ b // c\n'\\n' 'x' r##\"q\"#\"## \"s\\\"\n\" d::e");
        let words: Vec<(String, usize)> = tokens
            .iter()
            .filter_map(|spanned| match &spanned.token {
                Token::Ident(word) => Some((word.clone(), spanned.line)),
                Token::PathSep => Some(("::".to_owned(), spanned.line)),
                _ => None,
            })
            .collect();
        let expected = [("a", 1), ("b", 2), ("d", 4), ("::", 4), ("e", 4)];
        assert_eq!(words, expected.map(|(word, line)| (word.to_owned(), line)));
    }

    #[test]
    fn module_paths_follow_the_file_layout() {
        let path = |file: &str| join(&module_path(Path::new(file)));
        assert_eq!(path("lib.rs"), "");
        assert_eq!(path("main.rs"), "");
        assert_eq!(path("foo.rs"), "foo");
        assert_eq!(path("foo/mod.rs"), "foo");
        assert_eq!(path("foo/bar.rs"), "foo::bar");
        assert_eq!(path("foo/lib.rs"), "foo::lib");
    }

    #[test]
    fn the_real_workspace_lists_its_members() {
        let root = crate::project_root();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let members = workspace_members(&root, &manifest).unwrap();
        assert!(members.iter().any(|member| member == "xtask"), "{members:?}");
        assert!(members.iter().any(|member| member == "tests"), "{members:?}");
    }
}
