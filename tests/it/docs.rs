//! The documentation's links: every relative markdown link in README.md,
//! protocol.md and docs/*.md names a file that exists and, with a
//! `#fragment`, a heading of that file (GitHub's anchors); protocol.md's
//! table of contents lists every command section. Pure file checks: no
//! server.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, protocol.md and every docs/*.md.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md"), root().join("protocol.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    assert!(!more.is_empty(), "no docs/*.md found");
    docs.extend(more);
    docs
}

/// The lines of `text` outside fenced code blocks, with their numbers.
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

/// `line` without its inline code spans (`` `...` ``).
fn without_code(line: &str) -> String {
    let mut out = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as hyphens (github-slugger).
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

/// Every heading's anchor in `text`, a repeated one numbered as GitHub
/// numbers it (`-1`, `-2`, ...).
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (_, line) in prose(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes == 0 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..].replace('`', ""));
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

/// The targets of the markdown links in `text` (`[text](target)`), with
/// their line numbers; code is left out.
fn links(text: &str) -> Vec<(usize, String)> {
    let re = regex::Regex::new(r"\]\(([^)\s]+)\)").expect("regex");
    let mut out = Vec::new();
    for (n, line) in prose(text) {
        let line = without_code(line);
        for c in re.captures_iter(&line) {
            out.push((n, c[1].to_string()));
        }
    }
    out
}

/// What is wrong with `target`, a link in `doc`, if anything.
fn broken(doc: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
    let file = if path.is_empty() {
        doc.to_path_buf()
    } else {
        doc.parent().expect("a document's folder").join(path)
    };
    if !file.exists() {
        return Some(format!("{} does not exist", file.display()));
    }
    if fragment.is_empty() || file.extension().is_none_or(|e| e != "md") {
        return None;
    }
    let text = std::fs::read_to_string(&file).expect("read link target");
    (!anchors(&text).contains(fragment))
        .then(|| format!("{} has no heading #{fragment}", file.display()))
}

#[test]
fn every_relative_link_in_the_docs_points_at_a_file_and_heading_that_exist() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("read document");
        for (line, target) in links(&text) {
            checked += 1;
            if let Some(why) = broken(&doc, &target) {
                bad.push(format!("{}:{line}: ({target}): {why}", doc.display()));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} links found: is the parser right?"
    );
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn the_link_checker_finds_a_missing_file_and_a_missing_heading() {
    let readme = root().join("README.md");
    assert_eq!(broken(&readme, "protocol.md#seek"), None);
    assert_eq!(broken(&readme, "docs/performance.md"), None);
    assert!(broken(&readme, "protocol.md#no-such-heading").is_some());
    assert!(broken(&readme, "docs/no-such-file.md").is_some());
    assert!(broken(&readme, "#queue-or-stream").is_none());
    assert_eq!(
        slug("Watching it: STATS, LIST, Prometheus and a dashboard"),
        "watching-it-stats-list-prometheus-and-a-dashboard"
    );
    assert_eq!(slug("5. Commands"), "5-commands");
    assert_eq!(slug("Status and what's coming"), "status-and-whats-coming");
}

#[test]
fn protocol_md_contents_list_every_command_section() {
    let text = std::fs::read_to_string(root().join("protocol.md")).expect("read protocol.md");
    let contents: String = text
        .split_once("Contents:")
        .and_then(|(_, rest)| rest.split_once("\n---"))
        .map(|(toc, _)| toc.to_string())
        .expect("protocol.md has a Contents: block ending at ---");
    let listed: HashSet<String> = links(&contents)
        .into_iter()
        .filter_map(|(_, t)| t.strip_prefix('#').map(str::to_string))
        .collect();
    let commands = text
        .split_once("\n## 5. Commands")
        .and_then(|(_, rest)| rest.split_once("\n## 6. "))
        .map(|(section, _)| section)
        .expect("protocol.md has sections 5 and 6");
    let sections: Vec<String> = prose(commands)
        .into_iter()
        .filter_map(|(_, l)| l.strip_prefix("### "))
        .map(slug)
        .collect();
    assert!(sections.contains(&"seek".to_string()), "{sections:?}");
    let missing: Vec<&String> = sections.iter().filter(|s| !listed.contains(*s)).collect();
    assert!(
        missing.is_empty(),
        "protocol.md's contents leave out {missing:?}"
    );
}
