//! Every table of the data file, in one place.
//!
//! All tables map byte keys to byte values; the domain modules own the encodings
//! (documented on each table). Adding a table means adding a variant here, nothing else:
//! [`crate::store::Store::open`] creates every table listed in [`Table::ALL`].

use redb::TableDefinition;

/// The key-value tables of `data.redb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Store-wide settings: `schema_version` (u32 LE), `server_secret`, `setup_token_hash`.
    Meta,
    /// Collection id → collection definition (JSON).
    Collections,
    /// Lower-cased collection name → collection id.
    CollectionNames,
    /// Collection id → record statistics (`records::stats` encoding: count, custom ids, schema version).
    CollectionStats,
    /// `collection id` 0x00 `record id` → record values (JSON object, stored field names).
    Records,
    /// `collection id` 0x00 lower-cased email → record id, for auth collections.
    AuthIdentities,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 6] = [
        Table::Meta,
        Table::Collections,
        Table::CollectionNames,
        Table::CollectionStats,
        Table::Records,
        Table::AuthIdentities,
    ];

    /// The redb definition backing this table.
    pub(super) fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }

    /// The table's name inside the data file.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Collections => "collections",
            Table::CollectionNames => "collection_names",
            Table::CollectionStats => "collection_stats",
            Table::Records => "records",
            Table::AuthIdentities => "auth_identities",
        }
    }
}

/// The version of the table layout this build writes. Bump it and add an upgrade step in
/// `store::upgrade` when an encoding changes.
pub const SCHEMA_VERSION: u32 = 1;

/// The `Meta` key holding [`SCHEMA_VERSION`].
pub const META_SCHEMA_VERSION: &[u8] = b"schema_version";
