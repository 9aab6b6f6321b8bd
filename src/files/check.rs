//! `backbone check`, stored files: every file a record names has its `file_refs` row and its
//! blob on disk, and every `file_refs` row belongs to a record that names it. Blobs on disk
//! that nothing references (left by a crash between placing an upload and its commit) and
//! leftover temp files are reported as notes: the sweep at the next start removes them.
//! Reads one snapshot and the file tree; changes nothing.

use std::collections::BTreeSet;
use std::path::Path;

use crate::records::catalog::Catalog;
use crate::records::field::{file_names, FieldKind};
use crate::records::files::file_ref_key;
use crate::records::record::decode;
use crate::records::{collection_prefix, RecordsError};
use crate::store::{ReadTx, ScanControl, Table};

/// What the file check found.
#[derive(Debug, Default)]
pub struct FilesCheck {
    pub files: u64,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

/// Runs the file checks against the snapshot `tx` and the blobs under `root` (`files/`).
pub fn check(tx: &ReadTx, root: &Path) -> Result<FilesCheck, RecordsError> {
    let mut report = FilesCheck::default();
    let catalog = Catalog::load(tx)?;
    // Every (collection, record, name) some record's file field holds.
    let mut named: BTreeSet<Vec<u8>> = BTreeSet::new();
    for entry in catalog.all() {
        let c = &entry.collection;
        let fields: Vec<&str> = c
            .fields
            .iter()
            .filter(|f| matches!(f.kind, FieldKind::File(_)))
            .map(|f| f.name.as_str())
            .collect();
        if fields.is_empty() {
            continue;
        }
        let mut undecodable = 0usize;
        tx.scan_prefix(Table::Records, &collection_prefix(&c.id), false, None, |_, v| {
            let Ok(record) = decode(v) else {
                undecodable += 1;
                return ScanControl::Continue;
            };
            let id = record.get("id").and_then(|v| v.as_str()).unwrap_or_default().to_string();
            for field in &fields {
                for name in file_names(record.get(*field)) {
                    named.insert(file_ref_key(&c.id, &id, &name));
                }
            }
            ScanControl::Continue
        })?;
        if undecodable > 0 {
            // The records check reports these; nothing more to say about their files.
            continue;
        }
    }
    let mut rows: BTreeSet<Vec<u8>> = BTreeSet::new();
    tx.scan_prefix(Table::FileRefs, b"", false, None, |k, _| {
        rows.insert(k.to_vec());
        ScanControl::Continue
    })?;
    report.files = rows.len() as u64;
    let describe = |key: &[u8]| String::from_utf8_lossy(key).replace('\0', "/");
    for key in named.difference(&rows).take(20) {
        report
            .problems
            .push(format!("files: {} is named by its record but has no file_refs row", describe(key)));
    }
    for key in rows.difference(&named).take(20) {
        report
            .problems
            .push(format!("files: file_refs row {} belongs to no record naming it", describe(key)));
    }
    let mut missing = 0usize;
    for key in &rows {
        if !root.join(describe(key)).is_file() {
            missing += 1;
            if missing <= 20 {
                report.problems.push(format!("files: blob {} is missing on disk", describe(key)));
            }
        }
    }
    if missing > 20 {
        report.problems.push(format!("files: {missing} blobs missing on disk in all"));
    }
    // Blobs nobody references, and uploads that never finished.
    let mut unreferenced = 0usize;
    if let Ok(collections) = std::fs::read_dir(root) {
        for c in collections.flatten().filter(|e| e.path().is_dir()) {
            let c_name = c.file_name().to_string_lossy().to_string();
            if c_name.starts_with('.') {
                continue;
            }
            for r in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
                let r_name = r.file_name().to_string_lossy().to_string();
                for f in std::fs::read_dir(r.path()).into_iter().flatten().flatten() {
                    if !f.path().is_file() {
                        continue;
                    }
                    let name = f.file_name().to_string_lossy().to_string();
                    if !rows.contains(&file_ref_key(&c_name, &r_name, &name)) {
                        unreferenced += 1;
                    }
                }
            }
        }
    }
    if unreferenced > 0 {
        report
            .notes
            .push(format!("{unreferenced} unreferenced blob(s) under files/; the next start sweeps them"));
    }
    let temps = std::fs::read_dir(root.join(".tmp")).map(|d| d.flatten().count()).unwrap_or(0);
    if temps > 0 {
        report.notes.push(format!("{temps} unfinished upload(s) in files/.tmp; the next start removes them"));
    }
    Ok(report)
}
