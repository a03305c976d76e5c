//! The guides cannot drift from the code: every Markdown page is a doc test
//! (`src/lib.rs`, `mod guides`), so its Rust blocks are compiled and run by
//! `cargo test`; this checks that no page is left out and that no block
//! leaves rustdoc to guess its language.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, CHANGELOG.md and docs/*.md, as paths relative to the crate.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md"), PathBuf::from("CHANGELOG.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(root()).unwrap().to_owned())
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The info string of each fenced block that opens, with its line number.
fn fences(text: &str) -> Vec<(usize, String)> {
    let mut open: Option<(char, usize)> = None;
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let Some(c) = t.chars().next().filter(|c| *c == '`' || *c == '~') else {
            continue;
        };
        let len = t.chars().take_while(|x| *x == c).count();
        if len < 3 {
            continue;
        }
        match open {
            None => {
                open = Some((c, len));
                found.push((n + 1, t[len..].trim().to_owned()));
            }
            Some((oc, olen)) if oc == c && len >= olen && t[len..].trim().is_empty() => open = None,
            Some(_) => {}
        }
    }
    assert!(open.is_none(), "a code block is never closed");
    found
}

#[test]
fn every_page_is_a_doc_test() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    for page in pages() {
        let hook = format!("include_str!(\"../{}\")", page.display());
        assert!(
            lib.contains(&hook),
            "{} is not compiled as a doc test: add `#[doc = {hook}]` on an item of \
             `mod guides` in src/lib.rs",
            page.display()
        );
    }
}

#[test]
fn every_code_block_names_its_language() {
    for page in pages() {
        let text = std::fs::read_to_string(root().join(&page)).unwrap();
        for (line, info) in fences(&text) {
            let at = format!("{}:{line}", page.display());
            // rustdoc takes a block without a language for Rust.
            assert!(
                !info.is_empty(),
                "{at}: say what the block holds (```rust, ```text, ```sh, …)"
            );
            let mut words = info.split([',', ' ']).filter(|w| !w.is_empty());
            if words.next() == Some("rust") {
                for attr in words {
                    assert!(
                        matches!(attr, "no_run" | "should_panic" | "edition2021"),
                        "{at}: `{attr}`: a Rust block is compiled, and run unless it says no_run"
                    );
                }
            }
        }
    }
}

#[test]
fn fences_are_found() {
    let text = "a\n```rust\nlet x = 1;\n```\n\n````text\n```\n````\n~~~sh\nls\n~~~\n```\n";
    let found = fences(&format!("{text}x\n```\n"));
    assert_eq!(
        found,
        [
            (2, "rust".to_string()),
            (6, "text".to_string()),
            (9, "sh".to_string()),
            (12, String::new())
        ]
    );
}

/// Words a newcomer cannot place: "the original" meant the design jobcell
/// grew from. User-facing text names what it means instead.
#[test]
fn no_text_refers_to_the_original() {
    let mut files: Vec<PathBuf> = pages().into_iter().map(|p| root().join(p)).collect();
    let mut dirs = vec![root().join("src"), root().join("examples")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs" || e == "md") {
                files.push(p);
            }
        }
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.to_lowercase().contains("the original"),
                "{}:{}: {line}",
                f.display(),
                n + 1
            );
        }
    }
}
