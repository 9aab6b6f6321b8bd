//! The module graph of ARCHITECTURE.md, held against the code: each module of `src/` may
//! import only the modules listed for it below, so the layers cannot tie themselves into
//! cycles again. Also: redb only in `store`, poem only in `api` and the composition root
//! (`app`, `cli`, `main`), no domain imports `app`, and the store imports no domain.
//!
//! Imports are read as text (`crate::x`, `backbone::x`, `use redb`, `poem::`), comments and
//! string literals left out; a module's tests count as the module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every top-level module and the modules it may use, from the bottom layer up. The
/// order matters for nothing but reading; the lists are the rule.
const LAYERS: &[(&str, &[&str])] = &[
    // Leaves: shared utilities and the process environment.
    ("util", &[]),
    ("datadir", &[]),
    ("config", &["util"]),
    // The key-value store: knows no domain.
    ("store", &["util", "datadir", "config"]),
    // Who is calling (principal, passwords, tokens, rate limits) and the audit log.
    ("auth", &["util", "config"]),
    ("audit", &["util", "store", "auth"]),
    // Domains.
    ("records", &["util", "config", "store", "auth", "audit"]),
    ("jobs", &["util", "config", "store"]),
    ("mail", &["util", "config", "store", "audit", "jobs"]),
    ("webhooks", &["util", "config", "store", "jobs"]),
    ("files", &["util", "config", "datadir", "store", "auth", "records", "jobs"]),
    ("search", &["util", "config", "store", "auth", "records", "jobs"]),
    ("accounts", &["util", "config", "store", "auth", "audit", "records", "mail"]),
    ("realtime", &["util", "config", "store", "auth", "records"]),
    // Operations: reads every domain, owned by none.
    (
        "observe",
        &[
            "util", "config", "store", "auth", "audit", "records", "jobs", "mail", "webhooks", "files",
            "search", "accounts",
        ],
    ),
    // HTTP translation and the composition root.
    (
        "api",
        &[
            "util", "config", "datadir", "store", "auth", "audit", "records", "jobs", "mail", "webhooks",
            "files", "search", "accounts", "realtime", "observe", "app",
        ],
    ),
    (
        "app",
        &[
            "util", "config", "datadir", "store", "auth", "audit", "records", "jobs", "mail", "webhooks",
            "files", "search", "accounts", "realtime", "observe", "api",
        ],
    ),
    (
        "cli",
        &[
            "util", "config", "datadir", "store", "auth", "audit", "records", "jobs", "mail", "webhooks",
            "files", "search", "accounts", "realtime", "observe", "api", "app",
        ],
    ),
    ("main", &["util", "cli"]),
    ("lib", &[]),
];

/// Modules that may name poem: HTTP translation and the composition root.
const POEM: &[&str] = &["api", "app", "cli", "main"];
/// The only module that may name redb.
const REDB: &[&str] = &["store"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/records/list.rs` → `records`).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src_dir()).expect("under src");
    let first = rel.components().next().expect("component").as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a Rust file with comments and the contents of string literals blanked out
/// (line structure kept, so findings can name their line).
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
            let end = rest.find("*/").map(|e| e + 2).unwrap_or(rest.len());
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            i += end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|c| *c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body_start = 2 + hashes;
            let end =
                rest[body_start..].find(&close).map(|e| body_start + e + close.len()).unwrap_or(rest.len());
            out.push_str("\"\"");
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            i += end;
        } else if rest.starts_with('"') {
            let mut j = 1;
            let rb = rest.as_bytes();
            while j < rb.len() && rb[j] != b'"' {
                j += if rb[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            out.push_str("\"\"");
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            i += end;
        } else if rest.starts_with("'\"'") {
            // A char literal holding a quote must not open a string.
            out.push_str("' '");
            i += 3;
        } else {
            let c = rest.chars().next().expect("char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The crate modules a file's code names (`crate::x`, or `backbone::x` in `main.rs`).
fn imports(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        for prefix in ["crate::", "backbone::"] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                let after = &rest[at + prefix.len()..];
                let name: String =
                    after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty() {
                    found.push((n + 1, name));
                }
                rest = after;
            }
        }
    }
    found
}

/// Whether the code names the external crate `name` (`use name`, `name::`).
fn names_crate(code: &str, name: &str) -> Option<usize> {
    code.lines().position(|line| {
        line.match_indices(name).any(|(at, _)| {
            let before = line[..at].chars().last();
            let after = &line[at + name.len()..];
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && (after.starts_with("::")
                    || (after.starts_with(';') && line.trim_start().starts_with("use ")))
        })
    })
}

#[test]
fn every_module_imports_only_what_its_layer_allows() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files.sort();
    assert!(files.len() > 50, "found only {} files under src/", files.len());
    let mut problems = Vec::new();
    for path in &files {
        let module = module_of(path);
        let Some(may) = allowed.get(module.as_str()) else {
            problems.push(format!("{}: module `{module}` is not in LAYERS; give it a layer", path.display()));
            continue;
        };
        let code = code_only(&std::fs::read_to_string(path).expect("read"));
        for (line, used) in imports(&code) {
            if used != module && !may.contains(&used.as_str()) {
                problems.push(format!("{}:{line}: `{module}` may not import `{used}`", path.display()));
            }
        }
        if let Some(line) = names_crate(&code, "redb").filter(|_| !REDB.contains(&module.as_str())) {
            problems.push(format!("{}:{}: only `store` may name redb", path.display(), line + 1));
        }
        if let Some(line) = names_crate(&code, "poem").filter(|_| !POEM.contains(&module.as_str())) {
            problems.push(format!(
                "{}:{}: only `api` and the composition root may name poem",
                path.display(),
                line + 1
            ));
        }
    }
    assert!(problems.is_empty(), "imports that break the module map:\n{}", problems.join("\n"));
}

#[test]
fn the_layer_table_itself_forbids_what_the_map_forbids() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let domains = ["records", "jobs", "mail", "webhooks", "files", "search", "accounts", "auth", "audit"];
    for domain in domains {
        assert!(!allowed[domain].contains(&"app"), "domain {domain} must not import app");
        assert!(!allowed[domain].contains(&"api"), "domain {domain} must not import api");
    }
    for low in ["util", "datadir", "config", "store"] {
        for domain in domains {
            assert!(!allowed[low].contains(&domain), "{low} must not import the domain {domain}");
        }
    }
    assert!(allowed["util"].is_empty(), "util is a leaf");
    assert!(!allowed["observe"].contains(&"app"), "observe is handed what it reads; it does not import app");
    // No cycles: every edge of the table runs down the order of LAYERS, except api -> app
    // (handlers read the services from the `App` the composition root hands them).
    let order: BTreeMap<&str, usize> = LAYERS.iter().enumerate().map(|(i, (m, _))| (*m, i)).collect();
    for (module, deps) in LAYERS {
        for dep in *deps {
            let down = order[dep] < order[module];
            let known = matches!((*module, *dep), ("api", "app"));
            assert!(down || known, "{module} -> {dep} runs up the layers");
        }
    }
}

#[test]
fn the_checker_sees_what_it_must_see() {
    let code = code_only(
        "use crate::store::Store; // crate::app::App\nlet s = \"crate::api\";\n/* crate::cli */ let t = redb::Database::create(p);\nuse poem;\n",
    );
    let names: Vec<String> = imports(&code).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, vec!["store".to_string()]);
    assert_eq!(names_crate(&code, "redb"), Some(2));
    assert_eq!(names_crate(&code, "poem"), Some(3));
    assert_eq!(names_crate("let path = dir.join(\"data.redb\");", "redb"), None);
    assert_eq!(names_crate(&code_only("// poem::Route\n"), "poem"), None);
}
