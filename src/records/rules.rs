//! Access rules: who may list, view, create, update and delete a collection's records.
//!
//! `null` (None) means superusers only, `""` means everyone. Other expressions are stored
//! and shown, but their evaluation arrives with the filter language; until then a
//! non-empty rule admits superusers only, which is the safe reading (deny by default).

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    Superuser { id: String },
    Record { collection_id: String, id: String },
}

impl Principal {
    pub fn is_superuser(&self) -> bool {
        matches!(self, Principal::Superuser { .. })
    }
}

/// Whether `principal` passes `rule`.
pub fn allows(rule: &Option<String>, principal: &Principal) -> bool {
    if principal.is_superuser() {
        return true;
    }
    matches!(rule, Some(r) if r.trim().is_empty())
}
