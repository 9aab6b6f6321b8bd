//! Observability: the audit log (metrics, request logs and alerts arrive with their issue).

pub mod audit;
