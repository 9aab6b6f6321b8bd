//! Collection definitions (PocketBase's collection JSON) and the checks on client input.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::field::{
    AutodateOptions, BoolOptions, DomainOptions, Field, FieldKind, PasswordOptions, TextOptions,
};
use super::{FieldError, FieldErrors, RecordsError};
use crate::auth::{Op, ScopeTarget};
use crate::util::id;
use crate::util::invalid::{parse_object, present};

/// Fixed id of the built-in superusers collection (PocketBase uses the same).
pub const SUPERUSERS_ID: &str = "pbc_3142635823";
/// Name of the built-in superusers collection.
pub const SUPERUSERS_NAME: &str = "_superusers";
/// Longest accepted rule expression, in bytes.
pub const MAX_RULE_LENGTH: usize = 8192;
/// Most fields a collection may have.
pub const MAX_FIELDS: usize = 500;
/// Default lifetime of auth tokens, in seconds.
pub const DEFAULT_TOKEN_SECONDS: u64 = 86_400;

/// `base` holds plain records; `auth` records can sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionKind {
    Base,
    Auth,
}

/// Token settings of an auth collection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenSettings {
    pub duration: u64,
}

/// Password sign-in settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PasswordAuth {
    pub enabled: bool,
    /// Fields a sign-in identity is matched against (Backbone supports `email`).
    pub identity_fields: Vec<String>,
}

/// One-time password (emailed code) sign-in settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OtpSettings {
    pub enabled: bool,
    /// Seconds a code stays valid.
    pub duration: u64,
    /// Digits in a code.
    pub length: u32,
}

fn default_password_auth() -> PasswordAuth {
    PasswordAuth { enabled: true, identity_fields: vec!["email".into()] }
}
fn default_otp() -> OtpSettings {
    OtpSettings { enabled: false, duration: 180, length: 8 }
}
fn default_verification_token() -> TokenSettings {
    TokenSettings { duration: 259_200 }
}
fn default_short_token() -> TokenSettings {
    TokenSettings { duration: 1800 }
}

/// Settings only auth collections have.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthSettings {
    /// Extra condition a record must meet to sign in (`null`: nobody signs in, `""`: anyone).
    pub auth_rule: Option<String>,
    /// Who may manage these accounts like a superuser (set email, `verified`, passwords
    /// without the old one). `null`: superusers only.
    pub manage_rule: Option<String>,
    pub auth_token: TokenSettings,
    #[serde(default = "default_password_auth")]
    pub password_auth: PasswordAuth,
    #[serde(default = "default_otp")]
    pub otp: OtpSettings,
    #[serde(default = "default_verification_token")]
    pub verification_token: TokenSettings,
    #[serde(default = "default_short_token")]
    pub password_reset_token: TokenSettings,
    #[serde(default = "default_short_token")]
    pub email_change_token: TokenSettings,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            auth_rule: Some(String::new()),
            manage_rule: None,
            auth_token: TokenSettings { duration: DEFAULT_TOKEN_SECONDS },
            password_auth: default_password_auth(),
            otp: default_otp(),
            verification_token: default_verification_token(),
            password_reset_token: default_short_token(),
            email_change_token: default_short_token(),
        }
    }
}

/// How search text is split into terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchLanguage {
    /// Language-neutral: words split on non-alphanumerics, lower-cased, accents folded.
    #[default]
    Default,
    /// As `default`, plus English stemming (`running` finds `runs`).
    English,
}

/// One indexed field and its weight in ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchField {
    pub name: String,
    #[serde(default = "default_boost")]
    pub boost: f32,
}

fn default_boost() -> f32 {
    1.0
}

/// Full-text search settings (a Backbone extension of the collection JSON): which text,
/// editor, select, email, url and relation fields are indexed (relations by the
/// presentable fields of the records they point at), their boosts, and the language.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchSettings {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub fields: Vec<SearchField>,
    #[serde(default)]
    pub language: SearchLanguage,
}

impl SearchSettings {
    /// True for the untouched default (not written into the collection JSON).
    pub fn is_unset(&self) -> bool {
        *self == SearchSettings::default()
    }
}

/// Most fields one collection may index.
pub const MAX_SEARCH_FIELDS: usize = 32;

/// A stored collection definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Collection {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: CollectionKind,
    pub system: bool,
    pub fields: Vec<Field>,
    pub indexes: Vec<String>,
    pub list_rule: Option<String>,
    pub view_rule: Option<String>,
    pub create_rule: Option<String>,
    pub update_rule: Option<String>,
    pub delete_rule: Option<String>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSettings>,
    #[serde(default, skip_serializing_if = "SearchSettings::is_unset")]
    pub search: SearchSettings,
    pub created: String,
    pub updated: String,
}

impl Collection {
    /// The rule that guards `op` on this collection's records.
    pub fn rule(&self, op: Op) -> &Option<String> {
        match op {
            Op::List => &self.list_rule,
            Op::View => &self.view_rule,
            Op::Create => &self.create_rule,
            Op::Update => &self.update_rule,
            Op::Delete => &self.delete_rule,
        }
    }

    /// Whether `other` defines different fields than this collection (compared in their
    /// stored JSON form).
    pub fn fields_differ(&self, other: &Collection) -> bool {
        serde_json::to_value(&self.fields).ok() != serde_json::to_value(&other.fields).ok()
    }

    /// This collection as the target of an API key scope.
    pub fn scope_target(&self) -> ScopeTarget<'_> {
        ScopeTarget { id: &self.id, name: &self.name, system: self.system }
    }

    /// The field called `name`, if any.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// True for auth collections.
    pub fn is_auth(&self) -> bool {
        self.kind == CollectionKind::Auth
    }

    /// The built-in `_superusers` collection.
    pub fn superusers(now: &str) -> Collection {
        let fields = auth_system_fields();
        Collection {
            id: SUPERUSERS_ID.into(),
            name: SUPERUSERS_NAME.into(),
            kind: CollectionKind::Auth,
            system: true,
            fields,
            indexes: vec![],
            list_rule: None,
            view_rule: None,
            create_rule: None,
            update_rule: None,
            delete_rule: None,
            auth: Some(AuthSettings::default()),
            search: SearchSettings::default(),
            created: now.into(),
            updated: now.into(),
        }
    }
}

/// The system fields of every auth collection, in PocketBase's order and with its ids.
pub fn auth_system_fields() -> Vec<Field> {
    let system = |id: &str, name: &str, hidden: bool, required: bool, kind: FieldKind| Field {
        id: id.into(),
        name: name.into(),
        system: true,
        hidden,
        presentable: false,
        required,
        kind,
    };
    vec![
        id_field(),
        system("email3885137012", "email", false, true, FieldKind::Email(DomainOptions::default())),
        system("bool1547992806", "emailVisibility", false, false, FieldKind::Bool(BoolOptions {})),
        system("bool256245529", "verified", false, false, FieldKind::Bool(BoolOptions {})),
        system(
            "password901924565",
            "password",
            true,
            true,
            FieldKind::Password(PasswordOptions { min: 8, max: 0 }),
        ),
        system("text2504183744", "tokenKey", true, true, FieldKind::Text(TextOptions::new(30, 60, ""))),
        autodate_field("created", false),
        autodate_field("updated", true),
    ]
}

/// The `id` system field every collection has.
pub fn id_field() -> Field {
    let mut options = TextOptions::new(15, 15, "^[a-z0-9]+$");
    options.autogenerate_pattern = "[a-z0-9]{15}".into();
    options.primary_key = true;
    Field {
        id: "text3208210256".into(),
        name: "id".into(),
        system: true,
        hidden: false,
        presentable: false,
        required: true,
        kind: FieldKind::Text(options),
    }
}

/// The `created` / `updated` system fields.
pub fn autodate_field(name: &str, on_update: bool) -> Field {
    Field {
        id: if on_update { "autodate3332085495".into() } else { "autodate2990389176".into() },
        name: name.into(),
        system: true,
        hidden: false,
        presentable: false,
        required: false,
        kind: FieldKind::Autodate(AutodateOptions { on_create: true, on_update }),
    }
}

/// A collection create or update body. Every member is optional so one type serves both;
/// a rule sent as `null` is `Some(None)` ("superusers only"), an absent one `None`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionInput {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub fields: Option<Vec<Value>>,
    #[serde(default)]
    pub indexes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub list_rule: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub view_rule: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub create_rule: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub update_rule: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub delete_rule: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub auth_rule: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub manage_rule: Option<Option<String>>,
    #[serde(default)]
    pub auth_token: Option<TokenSettings>,
    #[serde(default)]
    pub password_auth: Option<PasswordAuth>,
    #[serde(default)]
    pub otp: Option<OtpSettings>,
    #[serde(default)]
    pub verification_token: Option<TokenSettings>,
    #[serde(default)]
    pub password_reset_token: Option<TokenSettings>,
    #[serde(default)]
    pub email_change_token: Option<TokenSettings>,
    #[serde(default)]
    pub search: Option<SearchSettings>,
}

impl CollectionInput {
    /// Parses a JSON body, turning type errors into a validation failure. A body that is
    /// not an object is a bad request, as in PocketBase.
    pub fn parse(body: Value) -> Result<CollectionInput, RecordsError> {
        if !body.is_object() {
            return Err(RecordsError::BadRequest("The body must be a JSON object.".into()));
        }
        Ok(parse_object(body, "Failed to validate the collection.")?)
    }
}

fn valid_identifier(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Builds the collection a create or update asks for, or every problem with the input.
/// `existing` is the current definition on update.
pub fn build(
    input: CollectionInput,
    existing: Option<&Collection>,
    new_id: String,
    now: &str,
    resolve_collection: &dyn Fn(&str) -> Option<String>,
) -> Result<Collection, RecordsError> {
    let mut errors = FieldErrors::new();
    let message = if existing.is_some() {
        "Failed to update the collection."
    } else {
        "Failed to create the collection."
    };

    let name = match (&input.name, existing) {
        (Some(n), _) => n.trim().to_string(),
        (None, Some(e)) => e.name.clone(),
        (None, None) => String::new(),
    };
    let system = existing.map(|e| e.system).unwrap_or(false);
    if name.is_empty() {
        errors.insert("name".into(), FieldError::new("validation_required", "Cannot be blank."));
    } else if !valid_identifier(&name, 100) || name.as_bytes()[0].is_ascii_digit() {
        errors.insert(
            "name".into(),
            FieldError::new(
                "validation_invalid_name",
                "Use 1-100 letters, digits and underscores, not starting with a digit.",
            ),
        );
    } else if name.starts_with('_') && !system {
        errors.insert(
            "name".into(),
            FieldError::new("validation_reserved_name", "Names starting with _ are reserved."),
        );
    }
    if let Some(e) = existing {
        if e.system && name != e.name {
            errors.insert(
                "name".into(),
                FieldError::new("validation_system_collection", "System collections cannot be renamed."),
            );
        }
    }

    let kind = match (input.kind.as_deref(), existing) {
        (None, Some(e)) => e.kind,
        (None, None) | (Some("base"), _) => CollectionKind::Base,
        (Some("auth"), _) => CollectionKind::Auth,
        (Some(other), _) => {
            errors.insert(
                "type".into(),
                FieldError::new(
                    "validation_invalid_type",
                    format!("Unsupported collection type {other:?}; use \"base\" or \"auth\"."),
                ),
            );
            CollectionKind::Base
        }
    };
    if let Some(e) = existing {
        if e.kind != kind {
            errors.insert(
                "type".into(),
                FieldError::new("validation_type_change", "The collection type cannot be changed."),
            );
        }
    }

    let fields = match input.fields {
        Some(raw) => {
            let self_id = existing.map(|e| e.id.clone()).unwrap_or_else(|| new_id.clone());
            let target = |wanted: &str| -> Option<String> {
                if wanted == self_id || wanted.eq_ignore_ascii_case(&name) {
                    Some(self_id.clone())
                } else {
                    resolve_collection(wanted)
                }
            };
            build_fields(raw, existing, kind, &mut errors, &target)
        }
        None => existing.map(|e| e.fields.clone()).unwrap_or_else(|| match kind {
            CollectionKind::Auth => auth_system_fields(),
            CollectionKind::Base => {
                vec![id_field(), autodate_field("created", false), autodate_field("updated", true)]
            }
        }),
    };

    let indexes = input.indexes.unwrap_or_else(|| existing.map(|e| e.indexes.clone()).unwrap_or_default());

    let mut rule = |slot: &str, given: Option<Option<String>>, old: Option<&Option<String>>| {
        let value = match given {
            Some(v) => v,
            None => old.cloned().unwrap_or(None),
        };
        if let Some(r) = &value {
            if r.len() > MAX_RULE_LENGTH {
                errors.insert(
                    slot.into(),
                    FieldError::new("validation_length_out_of_range", "The rule is too long."),
                );
            }
        }
        value
    };
    let list_rule = rule("listRule", input.list_rule, existing.map(|e| &e.list_rule));
    let view_rule = rule("viewRule", input.view_rule, existing.map(|e| &e.view_rule));
    let create_rule = rule("createRule", input.create_rule, existing.map(|e| &e.create_rule));
    let update_rule = rule("updateRule", input.update_rule, existing.map(|e| &e.update_rule));
    let delete_rule = rule("deleteRule", input.delete_rule, existing.map(|e| &e.delete_rule));
    let auth = match kind {
        CollectionKind::Base => None,
        CollectionKind::Auth => {
            let old = existing.and_then(|e| e.auth.clone()).unwrap_or_default();
            let auth_rule = rule("authRule", input.auth_rule, Some(&old.auth_rule));
            let manage_rule = rule("manageRule", input.manage_rule, Some(&old.manage_rule));
            let mut settings = AuthSettings {
                auth_rule,
                manage_rule,
                auth_token: input.auth_token.unwrap_or(old.auth_token),
                password_auth: input.password_auth.unwrap_or(old.password_auth),
                otp: input.otp.unwrap_or(old.otp),
                verification_token: input.verification_token.unwrap_or(old.verification_token),
                password_reset_token: input.password_reset_token.unwrap_or(old.password_reset_token),
                email_change_token: input.email_change_token.unwrap_or(old.email_change_token),
            };
            settings.password_auth.identity_fields.retain(|f| !f.is_empty());
            if settings.password_auth.identity_fields.is_empty() {
                settings.password_auth.identity_fields = vec!["email".into()];
            }
            // Each identity field must exist; one other than `email` also needs a unique
            // index of its own, checked with the indexes below.
            for name in &settings.password_auth.identity_fields {
                if !fields.iter().any(|f| &f.name == name) {
                    errors.insert(
                        "passwordAuth".into(),
                        FieldError::new(
                            "validation_invalid_identity",
                            format!("The identity field {name:?} is not a field of the collection."),
                        ),
                    );
                }
            }
            let durations = [
                ("authToken", settings.auth_token.duration),
                ("verificationToken", settings.verification_token.duration),
                ("passwordResetToken", settings.password_reset_token.duration),
                ("emailChangeToken", settings.email_change_token.duration),
                ("otp", settings.otp.duration),
            ];
            for (slot, seconds) in durations {
                if !(10..=31_536_000).contains(&seconds) {
                    errors.insert(
                        slot.into(),
                        FieldError::new("validation_out_of_range", "The duration must be 10 s to 1 year."),
                    );
                }
            }
            // 6 digits at least: with 5 tries per code and `mail_per_account` codes per hour,
            // a 4-digit code falls to guessing with ~6 % chance a day (SECURITY.md).
            if !(6..=12).contains(&settings.otp.length) {
                errors.insert(
                    "otp".into(),
                    FieldError::new("validation_out_of_range", "Codes have 6-12 digits."),
                );
            }
            Some(settings)
        }
    };

    let search = input.search.unwrap_or_else(|| existing.map(|e| e.search.clone()).unwrap_or_default());
    check_search(&search, &fields, &mut errors);

    if !errors.is_empty() {
        return Err(RecordsError::Validation { message: message.into(), fields: errors });
    }
    let built = Collection {
        id: existing.map(|e| e.id.clone()).unwrap_or(new_id),
        name,
        kind,
        system,
        fields,
        indexes,
        list_rule,
        view_rule,
        create_rule,
        update_rule,
        delete_rule,
        auth,
        search,
        created: existing.map(|e| e.created.clone()).unwrap_or_else(|| now.to_string()),
        updated: now.to_string(),
    };
    // Indexes name fields, so they are checked against the final field list.
    let defs = match super::index::parse_all(&built) {
        Ok(defs) => defs,
        Err(problems) => {
            return Err(RecordsError::Validation {
                message: message.into(),
                fields: problems.into_iter().collect(),
            })
        }
    };
    // As PocketBase: an identity field other than `email` needs a unique index on it alone
    // (sign-in looks the identity up through it).
    let identity_fields =
        built.auth.as_ref().map(|a| a.password_auth.identity_fields.clone()).unwrap_or_default();
    for name in identity_fields.iter().filter(|f| *f != "email") {
        if super::index::unique_on(&defs, name).is_none() {
            errors.insert(
                "passwordAuth".into(),
                FieldError::new(
                    "validation_identity_index",
                    format!("The identity field {name:?} needs a UNIQUE index on it alone."),
                ),
            );
        }
    }
    if !errors.is_empty() {
        return Err(RecordsError::Validation { message: message.into(), fields: errors });
    }
    Ok(built)
}

/// Whether a field of this kind can be indexed for search.
pub fn searchable_kind(kind: &FieldKind) -> bool {
    matches!(
        kind,
        FieldKind::Text(_)
            | FieldKind::Editor(_)
            | FieldKind::Select(_)
            | FieldKind::Email(_)
            | FieldKind::Url(_)
            | FieldKind::Relation(_)
    )
}

/// Checks the search settings against the final field list.
fn check_search(search: &SearchSettings, fields: &[Field], errors: &mut FieldErrors) {
    let mut bad = |path: String, code: &str, message: String| {
        errors.insert(path, FieldError::new(code, message));
    };
    if search.enabled && search.fields.is_empty() {
        bad("search.fields".into(), "validation_required", "Name at least one field to index.".into());
    }
    if search.fields.len() > MAX_SEARCH_FIELDS {
        bad(
            "search.fields".into(),
            "validation_length_out_of_range",
            format!("At most {MAX_SEARCH_FIELDS} fields can be indexed."),
        );
    }
    for (i, wanted) in search.fields.iter().enumerate() {
        let path = format!("search.fields.{i}");
        match fields.iter().find(|f| f.name == wanted.name) {
            None => bad(path, "validation_unknown_field", format!("No field named {:?}.", wanted.name)),
            Some(f) if f.is_never_returned() || !searchable_kind(&f.kind) => bad(
                path,
                "validation_not_searchable",
                format!(
                    "{:?} cannot be indexed: only visible text, editor, select, email, url and relation fields can.",
                    wanted.name
                ),
            ),
            Some(_) if search.fields[..i].iter().any(|o| o.name == wanted.name) => {
                bad(path, "validation_duplicate", format!("{:?} is listed twice.", wanted.name))
            }
            Some(_) if !(wanted.boost.is_finite() && wanted.boost > 0.0 && wanted.boost <= 100.0) => {
                bad(path, "validation_out_of_range", "The boost must be above 0 and at most 100.".into())
            }
            Some(_) => {}
        }
    }
}

/// Names a user field may not take: they mean something else in record JSON.
const RESERVED_FIELD_NAMES: [&str; 5] =
    ["collectionId", "collectionName", "expand", "passwordConfirm", "oldPassword"];

/// Parses the field list of a create/update. Fields without an id keep the id of the
/// existing field of the same name and type, so a client that omits ids does not drop data.
/// The first key of a field definition that names no option of its type (a typo such as
/// `requird` would otherwise be dropped without a word), with the type's option list. When
/// an existing field changes type, the old type's options (still in a definition edited from
/// the one the API returned) are ignored, not refused.
fn unknown_option(field: &Field, old: Option<&Field>, given: &[String]) -> Option<(String, String)> {
    let keys = |f: &Field| match serde_json::to_value(f) {
        Ok(Value::Object(map)) => map.keys().cloned().collect::<Vec<String>>(),
        _ => Vec::new(),
    };
    let known = keys(field);
    if known.is_empty() {
        return None;
    }
    let previous = old.map(keys).unwrap_or_default();
    let unknown = given.iter().find(|k| !known.contains(k) && !previous.contains(k))?;
    Some((unknown.clone(), known.join(", ")))
}

fn build_fields(
    raw: Vec<Value>,
    existing: Option<&Collection>,
    kind: CollectionKind,
    errors: &mut FieldErrors,
    resolve_collection: &dyn Fn(&str) -> Option<String>,
) -> Vec<Field> {
    if raw.len() > MAX_FIELDS {
        errors.insert(
            "fields".into(),
            FieldError::new("validation_too_many_fields", format!("At most {MAX_FIELDS} fields.")),
        );
        return vec![];
    }
    let mut fields: Vec<Field> = Vec::with_capacity(raw.len() + 3);
    for (i, value) in raw.into_iter().enumerate() {
        let given: Vec<String> = value.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        let mut field: Field = match serde_json::from_value(value) {
            Ok(f) => f,
            Err(err) => {
                errors.insert(
                    format!("fields.{i}"),
                    FieldError::new("validation_invalid_field", err.to_string()),
                );
                continue;
            }
        };
        let old = existing.and_then(|e| {
            if field.id.is_empty() {
                e.fields.iter().find(|f| f.name == field.name && f.type_name() == field.type_name())
            } else {
                e.fields.iter().find(|f| f.id == field.id)
            }
        });
        match old {
            Some(old) => field.id = old.id.clone(),
            None if field.id.is_empty() => {
                field.id = format!("{}{}", field.type_name(), id::random_string(10));
            }
            None => {}
        }
        // System fields keep their definition; only presentation flags may change.
        if let Some(old) = old.filter(|o| o.system) {
            let presentable = field.presentable;
            field = old.clone();
            field.presentable = presentable;
        }
        let auth_system = kind == CollectionKind::Auth
            && matches!(
                field.name.as_str(),
                "email" | "emailVisibility" | "verified" | "password" | "tokenKey"
            );
        if (matches!(field.name.as_str(), "id" | "created" | "updated") || auth_system) && old.is_none() {
            // The canonical system field is added below.
            continue;
        }
        let key = |suffix: &str| format!("fields.{i}.{suffix}");
        // System fields keep their definition whatever was sent (PocketBase exports carry
        // options of theirs that Backbone does not model); every other field is checked.
        if old.is_none_or(|o| !o.system) {
            if let Some((option, known)) = unknown_option(&field, old, &given) {
                errors.insert(
                    key(&option),
                    FieldError::new(
                        "validation_unknown_field_option",
                        format!(
                            "Unknown option {option:?} for a {} field; its options are: {known}.",
                            field.type_name()
                        ),
                    ),
                );
                continue;
            }
        }
        if !valid_identifier(&field.name, 100) {
            errors.insert(
                key("name"),
                FieldError::new("validation_invalid_name", "Use 1-100 letters, digits and underscores."),
            );
        } else if !field.system
            && RESERVED_FIELD_NAMES
                .iter()
                .chain(["id", "created", "updated"].iter())
                .any(|r| r.eq_ignore_ascii_case(&field.name))
        {
            errors.insert(key("name"), FieldError::new("validation_reserved_name", "This name is reserved."));
        } else if fields.iter().any(|f| f.name.eq_ignore_ascii_case(&field.name)) {
            errors
                .insert(key("name"), FieldError::new("validation_duplicated_name", "Duplicated field name."));
        }
        if fields.iter().any(|f| f.id == field.id) {
            errors.insert(key("id"), FieldError::new("validation_duplicated_id", "Duplicated field id."));
        }
        if matches!(field.kind, FieldKind::Password(_)) && !field.system {
            errors.insert(
                key("type"),
                FieldError::new("validation_invalid_type", "Password fields exist only in auth collections."),
            );
        }
        if let FieldKind::Relation(o) = &mut field.kind {
            if !o.collection_id.is_empty() {
                match resolve_collection(&o.collection_id) {
                    Some(id) => o.collection_id = id,
                    None => {
                        errors.insert(
                            key("collectionId"),
                            FieldError::new(
                                "validation_missing_collection",
                                format!("No collection {:?}.", o.collection_id),
                            ),
                        );
                    }
                }
            }
        }
        if let Err(problem) = field.check_definition() {
            errors.insert(key("type"), FieldError::new("validation_invalid_options", problem));
        }
        if old.is_none_or(|o| !o.system) {
            // Clients cannot declare their own fields as system fields.
            field.system = false;
        }
        fields.push(field);
    }
    // Every collection keeps its system fields; omitted ones are put back.
    let system_fields: Vec<Field> = match (existing, kind) {
        (Some(e), _) => e.fields.iter().filter(|f| f.system).cloned().collect(),
        (None, CollectionKind::Auth) => auth_system_fields(),
        (None, CollectionKind::Base) => {
            vec![id_field(), autodate_field("created", false), autodate_field("updated", true)]
        }
    };
    for (position, sys) in system_fields.into_iter().enumerate() {
        if fields.iter().any(|f| f.id == sys.id) {
            continue;
        }
        if sys.name == "id" {
            fields.insert(0, sys);
        } else if matches!(sys.kind, FieldKind::Autodate(_)) {
            fields.push(sys);
        } else {
            fields.insert(position.min(fields.len()), sys);
        }
    }
    fields
}
