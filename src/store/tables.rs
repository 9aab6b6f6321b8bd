//! Every table of the data file, in one place.
//!
//! All tables map byte keys to byte values; the domain modules own the encodings
//! (documented on each table). Adding a table means adding a variant here, nothing else:
//! [`crate::store::Store::open`] creates every table listed in [`Table::ALL`].

use redb::TableDefinition;

/// The key-value tables of `data.redb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Store-wide settings: `schema_version` (u32 LE), `server_secret`, `setup_token_hash`,
    /// one-time seeding flags (`alerts_seeded`, `files_sweep_cron_seeded`).
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
    /// Relation references: target collection id 0x00 target record id 0x00 source collection
    /// id 0x00 source record id 0x00 source field id → empty. Finds who points at a record
    /// (referential integrity, cascades, back-relations).
    RecordRefs,
    /// Secondary index entries: collection id 0x00 index name 0x00 (order-preserving encoded
    /// value)+ record id → empty (see `records::index`).
    RecordIndex,
    /// Job id (u64 BE) → job (JSON, `jobs::model::Job`).
    Jobs,
    /// Waiting jobs: queue 0x00 priority (u8) run_at ms (u64 BE) job id (u64 BE) → state (u8)
    /// kind (UTF-8).
    JobsReady,
    /// Running jobs: state (u8, always running) queue 0x00 job id (u64 BE) → kind (UTF-8).
    /// Each job is in exactly one of ready, by-state and finished (`jobs::model::index_key`).
    JobsByState,
    /// Unique key → job id (u64 BE), while that job is waiting or running.
    JobsUnique,
    /// Finished jobs: finished ms (u64 BE) job id (u64 BE) → state (u8) queue 0x00 kind
    /// (UTF-8); the retention pruner walks it by age.
    JobsFinished,
    /// Cron id → cron schedule (JSON, `jobs::cron::Cron`).
    Crons,
    /// Cron id 0x00 fired ms (u64 BE) job id (u64 BE) → run (JSON, `jobs::cron::CronRun`).
    CronRuns,
    /// Job id (u64 BE) attempt (u32 BE) → pid (u32 BE): effects of the `test.effect` kind,
    /// written in the completing transaction (empty unless `jobs.test_kinds` is on).
    JobEffects,
    /// API key id → key (JSON, `accounts::keys::ApiKey`: name, scopes, SHA-256 of the secret).
    ApiKeys,
    /// Audit entry id (16 hex digits of µs since 1970 + 8 random) → entry (JSON, `audit::Entry`).
    AuditLog,
    /// SHA-256 of a signed-out token → its expiry (i64 BE, Unix seconds); pruned after expiry.
    RevokedTokens,
    /// One-time password id → OTP (JSON, `auth::otp::Otp`: record, code hash, expiry, tries).
    AuthOtps,
    /// Settings section name (`mail`) → the superuser's overrides of the config defaults
    /// (JSON object, `mail::settings`). Written only through `Settings::update`.
    Settings,
    /// Mail job id (u64 BE) → delivery log row (JSON, `mail::log::LogRow`): recipient,
    /// subject, template, state, attempts, last SMTP reply; changes with the job's outcome.
    MailLog,
    /// Time (µs since 1970, u64 BE) sequence (u32 BE) → request log row (JSON,
    /// `observe::requests`: method, route template, status, duration, client IP, auth kind).
    /// The `Meta` key `request_log_bytes` holds the table's total size for the byte budget.
    RequestLog,
    /// Resolution (u8: 0 = 10 s, 1 = 5 min) time (ms since 1970, u64 BE) → one sample of
    /// every history series (JSON object series name → number, `observe::history`).
    MetricHistory,
    /// Alert rule id → rule with its evaluation state (JSON, `observe::alerts::Rule`).
    AlertRules,
    /// Time (ms since 1970, u64 BE) sequence (u32 BE) → alert transition (JSON: rule,
    /// `firing`/`resolved`, value, whether it was notified); the newest 5000 are kept.
    AlertHistory,
    /// Search outbox: sequence (u64 BE) → change to index (`search::outbox` encoding: a
    /// record or a whole collection), written in the transaction of the change; the
    /// `Meta` key `search_outbox_seq` holds the last sequence handed out. The indexer
    /// deletes entries once its index commit covers them.
    SearchOutbox,
    /// Stored files: collection id 0x00 record id 0x00 file name → metadata (JSON,
    /// `records::files::FileMeta`: field id, size, sniffed type, upload time). Changes in the
    /// same transaction as the record that references the file.
    FileRefs,
    /// Change feed for realtime: sequence (u64 BE) → one committed record change
    /// (`realtime::feed` encoding: time, action, collection id, record id, the record's stored
    /// values without secrets), written in the transaction of the change; the `Meta` key
    /// `change_feed_seq` holds the last sequence handed out and `change_feed_pruned` the
    /// newest one pruned. Kept for the configured retention, so a reconnecting client can
    /// resume.
    ChangeFeed,
    /// Webhook signing secrets: owner (UTF-8, `alert/<rule id>`) → secret (UTF-8). Job
    /// payloads name the owner, never the secret (`webhooks`).
    WebhookSecrets,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 30] = [
        Table::Meta,
        Table::Collections,
        Table::CollectionNames,
        Table::CollectionStats,
        Table::Records,
        Table::AuthIdentities,
        Table::RecordRefs,
        Table::RecordIndex,
        Table::Jobs,
        Table::JobsReady,
        Table::JobsByState,
        Table::JobsUnique,
        Table::JobsFinished,
        Table::Crons,
        Table::CronRuns,
        Table::JobEffects,
        Table::ApiKeys,
        Table::AuditLog,
        Table::RevokedTokens,
        Table::AuthOtps,
        Table::Settings,
        Table::MailLog,
        Table::RequestLog,
        Table::MetricHistory,
        Table::AlertRules,
        Table::AlertHistory,
        Table::SearchOutbox,
        Table::FileRefs,
        Table::ChangeFeed,
        Table::WebhookSecrets,
    ];

    /// The redb definition backing this table.
    pub(super) fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }

    /// This table's bit in a set of tables (see `Store::on_commit`; at most 64 tables).
    pub(super) fn bit(self) -> u64 {
        const _: () = assert!(Table::ALL.len() <= 64, "table sets are u64 bit sets");
        1u64 << (self as u32)
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
            Table::RecordRefs => "record_refs",
            Table::RecordIndex => "record_index",
            Table::Jobs => "jobs",
            Table::JobsReady => "jobs_ready",
            Table::JobsByState => "jobs_by_state",
            Table::JobsUnique => "jobs_unique",
            Table::JobsFinished => "jobs_finished",
            Table::Crons => "crons",
            Table::CronRuns => "cron_runs",
            Table::JobEffects => "job_effects",
            Table::ApiKeys => "api_keys",
            Table::AuditLog => "audit_log",
            Table::RevokedTokens => "revoked_tokens",
            Table::AuthOtps => "auth_otps",
            Table::Settings => "settings",
            Table::MailLog => "mail_log",
            Table::RequestLog => "request_log",
            Table::MetricHistory => "metric_history",
            Table::AlertRules => "alert_rules",
            Table::AlertHistory => "alert_history",
            Table::SearchOutbox => "search_outbox",
            Table::FileRefs => "file_refs",
            Table::ChangeFeed => "change_feed",
            Table::WebhookSecrets => "webhook_secrets",
        }
    }
}

/// The version of the table layout this build writes. Bump it and add an upgrade step in
/// `store::upgrade` when an encoding changes.
///
/// - 1: the first layout.
/// - 2: `record_index` keys use the order-preserving value encoding of `records::index`
///   (upgrade: entries dropped, rebuilt by `Records::open`).
/// - 3: a job has one state-index entry (`jobs_ready` while waiting, `jobs_by_state` while
///   running, `jobs_finished` once finished), whose value carries its state and kind
///   (upgrade: entries dropped, rebuilt by `Jobs::open`).
pub const SCHEMA_VERSION: u32 = 3;

/// The `Meta` key holding [`SCHEMA_VERSION`].
pub const META_SCHEMA_VERSION: &[u8] = b"schema_version";
