//! Every relative link in `README.md` and `docs/*.md` resolves: the file it names exists, and an
//! anchor (`#section`) names a heading of that page, as GitHub spells heading anchors.
//! Links to other sites are not followed (the tests reach nothing beyond loopback).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The Markdown pages: the README and every page under `docs/`.
fn pages() -> Vec<PathBuf> {
    let root = root();
    let mut pages = vec![root.join("README.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/");
    let mut more: Vec<PathBuf> = docs
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    more.sort();
    pages.extend(more);
    pages
}

/// The page's lines outside fenced code blocks, with their line numbers.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// `line` without its inline code spans.
fn without_code(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// The targets of the inline links `[text](target)` and images `![alt](target)` on a line.
fn targets(line: &str) -> Vec<String> {
    let line = without_code(line);
    let mut out = Vec::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        out.push(target.to_owned());
        rest = &after[end..];
    }
    out
}

/// GitHub's anchor of a heading: lower case; letters, digits, `-` and `_` kept; spaces to
/// hyphens; everything else dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings (a repeated heading gets `-1`, `-2`, … as on GitHub).
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (_, line) in prose(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base = slug(&without_code_marks(heading));
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// A heading's text with its code marks dropped but their contents kept.
fn without_code_marks(heading: &str) -> String {
    heading.replace('`', "")
}

/// Every broken link of `page`, as `page:line: target: why`.
fn broken(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).expect("read the page");
    let dir = page.parent().expect("a page has a folder");
    let name = page
        .strip_prefix(root())
        .unwrap_or(page)
        .display()
        .to_string();
    let mut out = Vec::new();
    for (n, line) in prose(&text) {
        for target in targets(line) {
            if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                page.to_path_buf()
            } else {
                dir.join(file)
            };
            if !path.exists() {
                out.push(format!("{name}:{n}: {target}: no such file"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if path.extension().is_some_and(|x| x == "md") {
                let there = std::fs::read_to_string(&path).expect("read the linked page");
                if !anchors(&there).contains(anchor) {
                    out.push(format!("{name}:{n}: {target}: no such heading"));
                }
            }
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let pages = pages();
    assert!(pages.len() >= 2, "the README and some docs: {pages:?}");
    let broken: Vec<String> = pages.iter().flat_map(|p| broken(p)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn links_anchors_and_slugs_are_read_as_github_does() {
    assert_eq!(
        targets("see [a](docs/a.md#x) and ![b](b.png \"t\") but not `[c](d)`"),
        ["docs/a.md#x", "b.png"]
    );
    assert_eq!(
        slug("Gossip: authenticated and encrypted"),
        "gossip-authenticated-and-encrypted"
    );
    assert_eq!(
        slug("Commands: real work from an allowlist"),
        "commands-real-work-from-an-allowlist"
    );
    let page = "# A\n## B\n```\n# not a heading\n```\n## B\n";
    let found = anchors(page);
    for anchor in ["a", "b", "b-1"] {
        assert!(found.contains(anchor), "{anchor} in {found:?}");
    }
    assert!(!found.contains("not-a-heading"));
}
