//! What other modules do around record and collection changes, without `records` knowing
//! them: the file system ([`FileHooks`](super::files::FileHooks), attached once the job queue exists) and change
//! consumers such as the search outbox ([`ChangeHooks`], given to `Records::open`).
//!
//! Change hooks run inside the write transaction of the change, so what they write commits
//! or vanishes with it: a consumer can never miss a change or see one that did not happen.

use std::sync::Arc;

use super::catalog::Catalog;
use super::collection::Collection;
use super::files::FileSync;
use super::record::Stored;
use super::RecordsError;
use crate::store::{StoreError, WriteTx};

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    /// The action's name in PocketBase's realtime messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// One record change, as a change hook sees it.
#[derive(Debug, Clone, Copy)]
pub struct RecordChange<'a> {
    pub action: Action,
    pub record_id: &'a str,
    /// The record as stored after the change; for a delete, as it was before.
    pub stored: &'a Stored,
}

/// A consumer of changes, called inside each change's write transaction.
pub trait ChangeHooks: Send + Sync {
    /// A record of `collection` was created, updated or deleted.
    fn record_changed(
        &self,
        tx: &mut WriteTx<'_>,
        collection: &Collection,
        change: RecordChange<'_>,
    ) -> Result<(), StoreError>;

    /// `before` became `after` (records already migrated); `catalog` is the catalog before
    /// the change.
    fn collection_updated(
        &self,
        tx: &mut WriteTx<'_>,
        catalog: &Catalog,
        before: &Collection,
        after: &Collection,
    ) -> Result<(), StoreError>;

    /// `collection` and all of its records were deleted.
    fn collection_deleted(&self, tx: &mut WriteTx<'_>, collection: &Collection) -> Result<(), StoreError>;
}

/// Every hook of a `Records` service (shared by its clones).
#[derive(Clone, Default)]
pub struct Hooks {
    /// The file system side of file fields.
    pub files: FileSync,
    changes: Arc<[Arc<dyn ChangeHooks>]>,
}

impl Hooks {
    pub fn new(changes: Vec<Arc<dyn ChangeHooks>>) -> Hooks {
        Hooks { files: FileSync::default(), changes: changes.into() }
    }

    pub(crate) fn record_changed(
        &self,
        tx: &mut WriteTx<'_>,
        collection: &Collection,
        change: RecordChange<'_>,
    ) -> Result<(), RecordsError> {
        for hook in self.changes.iter() {
            hook.record_changed(tx, collection, change)?;
        }
        Ok(())
    }

    pub(crate) fn collection_updated(
        &self,
        tx: &mut WriteTx<'_>,
        catalog: &Catalog,
        before: &Collection,
        after: &Collection,
    ) -> Result<(), RecordsError> {
        for hook in self.changes.iter() {
            hook.collection_updated(tx, catalog, before, after)?;
        }
        Ok(())
    }

    pub(crate) fn collection_deleted(
        &self,
        tx: &mut WriteTx<'_>,
        collection: &Collection,
    ) -> Result<(), RecordsError> {
        for hook in self.changes.iter() {
            hook.collection_deleted(tx, collection)?;
        }
        Ok(())
    }
}
