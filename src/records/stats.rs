//! Per-collection counters kept in `Table::CollectionStats`, updated in the same
//! transaction as the records they count.

use crate::store::{ReadTx, StoreError, Table, WriteTx};

/// Counters of one collection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectionStats {
    /// Number of records.
    pub count: u64,
    /// Records ever created with a client-chosen id. While 0, id order is creation order.
    pub custom_ids: u64,
    /// Bumped on every schema change; writes validated against an older schema retry.
    pub schema_generation: u64,
}

impl CollectionStats {
    fn decode(bytes: &[u8]) -> CollectionStats {
        let word = |i: usize| {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0)
        };
        CollectionStats { count: word(0), custom_ids: word(1), schema_generation: word(2) }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.custom_ids.to_le_bytes());
        out.extend_from_slice(&self.schema_generation.to_le_bytes());
        out
    }

    pub fn read(tx: &ReadTx, collection_id: &str) -> Result<CollectionStats, StoreError> {
        Ok(tx
            .get(Table::CollectionStats, collection_id.as_bytes())?
            .map(|b| CollectionStats::decode(&b))
            .unwrap_or_default())
    }

    pub fn load(tx: &WriteTx<'_>, collection_id: &str) -> Result<CollectionStats, StoreError> {
        Ok(tx
            .get(Table::CollectionStats, collection_id.as_bytes())?
            .map(|b| CollectionStats::decode(&b))
            .unwrap_or_default())
    }

    pub fn save(&self, tx: &mut WriteTx<'_>, collection_id: &str) {
        tx.put(Table::CollectionStats, collection_id.as_bytes(), self.encode());
    }
}
