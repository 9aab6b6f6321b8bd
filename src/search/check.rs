//! `backbone check`, the search index against the data: the index never claims outbox
//! entries the data file has not handed out, and once everything is applied, each
//! searchable collection has exactly one document per record. A missing index is a note
//! (the next start rebuilds it). Opens the index read-only; changes nothing.

use std::path::Path;

use tantivy::collector::Count;
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::{Index, Term};

use super::indexer::read_payload;
use super::outbox;
use super::schema::IndexSchema;
use crate::records::catalog::Catalog;
use crate::records::collection_prefix;
use crate::store::{ReadTx, ScanControl, Table};

/// What the search check found.
#[derive(Debug, Default)]
pub struct SearchCheck {
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

/// Runs the search checks against the snapshot `tx` and the index in `dir` (`search/`).
pub fn check(tx: &ReadTx, dir: &Path) -> SearchCheck {
    let mut report = SearchCheck::default();
    let Ok(catalog) = Catalog::load(tx) else {
        // The records check reports an unloadable catalog.
        return report;
    };
    let searchable: Vec<_> = catalog.all().filter(|e| e.collection.search.enabled).cloned().collect();
    if !dir.join("meta.json").exists() {
        if !searchable.is_empty() {
            report.notes.push("search: no index yet; the next start rebuilds it".into());
        }
        return report;
    }
    let index = match Index::open_in_dir(dir) {
        Ok(index) => index,
        Err(err) => {
            report.notes.push(format!("search: the index does not open ({err}); the next start rebuilds it"));
            return report;
        }
    };
    let outbox_seq = match outbox::last_seq(tx) {
        Ok(seq) => seq,
        Err(err) => {
            report.problems.push(format!("search: the outbox sequence does not read: {err}"));
            return report;
        }
    };
    let indexed = match read_payload(&index) {
        Ok(Some(payload)) => payload.seq,
        Ok(None) => {
            report
                .notes
                .push("search: the index has no commit of this build; the next start rebuilds it".into());
            return report;
        }
        Err(err) => {
            report
                .notes
                .push(format!("search: the index commit does not read ({err}); the next start rebuilds it"));
            return report;
        }
    };
    if indexed > outbox_seq {
        report.problems.push(format!(
            "search: the index claims outbox entry {indexed} but the data file handed out only {outbox_seq}"
        ));
        return report;
    }
    let pending = outbox::read_after(tx, indexed, 1).map(|e| !e.is_empty()).unwrap_or(true);
    if pending {
        report.notes.push(format!(
            "search: the index is at outbox entry {indexed} of {outbox_seq}; the next start applies the rest"
        ));
        return report;
    }
    let Ok(reader) = index.reader() else {
        report.notes.push("search: the index cannot be read".into());
        return report;
    };
    let searcher = reader.searcher();
    let schema = IndexSchema::new();
    for entry in &searchable {
        let c = &entry.collection;
        let term = Term::from_field_text(schema.collection, &c.id);
        let docs =
            searcher.search(&TermQuery::new(term, IndexRecordOption::Basic), &Count).unwrap_or(usize::MAX);
        let mut records = 0u64;
        let counted = tx.scan_prefix(Table::Records, &collection_prefix(&c.id), false, None, |_, _| {
            records += 1;
            ScanControl::Continue
        });
        if counted.is_err() {
            continue;
        }
        if docs as u64 != records {
            report.problems.push(format!(
                "search: collection {} has {records} records but {docs} indexed documents",
                c.name
            ));
        }
    }
    report
}
