//! Who may call the endpoints that are not for everyone: superusers, and for a few reading or
//! sending endpoints API keys holding a capability.
//!
//! The one place that turns a caller into "allowed" or a refusal for those endpoints: a
//! request without credentials is answered 401 (with PocketBase's message for superuser-only
//! endpoints), any other caller 403. Record access rules are not decided here; the record
//! service decides them.

use poem::Request;

use super::error::ApiError;
use super::principal;
use crate::accounts::keys;
use crate::app::App;
use crate::auth::Principal;

/// An API key capability and what it lets its holder do (the end of the 403 message).
pub(crate) struct Capability {
    pub name: &'static str,
    pub action: &'static str,
}

/// `mail.send`: `POST /api/mail/send`.
pub(crate) const MAIL_SEND: Capability = Capability { name: keys::MAIL_SEND, action: "send email" };

/// `metrics.read`: `/metrics`, `/api/metrics` and the request log.
pub(crate) const METRICS_READ: Capability =
    Capability { name: keys::METRICS_READ, action: "read metrics and logs" };

/// The caller of a superuser-only endpoint, or the refusal.
pub(crate) async fn superuser(app: &App, req: &Request) -> Result<Principal, ApiError> {
    admit_superuser(principal(app, req).await)
}

/// The caller of an endpoint for superusers and API keys holding `capability`, or the refusal.
pub(crate) async fn superuser_or_key_with(
    app: &App,
    req: &Request,
    capability: &Capability,
) -> Result<Principal, ApiError> {
    admit_superuser_or_key_with(principal(app, req).await, capability)
}

fn admit_superuser(who: Principal) -> Result<Principal, ApiError> {
    match who {
        Principal::Superuser { .. } => Ok(who),
        Principal::Anonymous => {
            Err(ApiError::unauthenticated("The request requires valid superuser authorization token."))
        }
        Principal::Record { .. } | Principal::ApiKey { .. } => {
            Err(ApiError::forbidden("Only superusers can perform this action."))
        }
    }
}

fn admit_superuser_or_key_with(who: Principal, capability: &Capability) -> Result<Principal, ApiError> {
    let admitted = match &who {
        Principal::Superuser { .. } => true,
        Principal::ApiKey { scopes, .. } => scopes.capabilities.iter().any(|c| c == capability.name),
        Principal::Anonymous | Principal::Record { .. } => false,
    };
    match who {
        _ if admitted => Ok(who),
        Principal::Anonymous => Err(ApiError::unauthenticated(format!(
            "Sign in as a superuser or send an API key with the {} capability.",
            capability.name
        ))),
        _ => Err(ApiError::forbidden(format!(
            "Only superusers and API keys with the {} capability can {}.",
            capability.name, capability.action
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::Scopes;

    fn key_with(capabilities: &[&str]) -> Principal {
        let scopes = Scopes {
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        };
        Principal::ApiKey { id: "k".into(), scopes: Arc::new(scopes) }
    }

    fn refusal(result: Result<Principal, ApiError>) -> (u16, String) {
        match result {
            Ok(_) => (200, String::new()),
            Err(e) => (e.status.as_u16(), e.detail),
        }
    }

    #[test]
    fn superuser_only_answers_401_without_credentials_and_403_to_everyone_else() {
        assert!(admit_superuser(Principal::Superuser { id: "s".into() }).is_ok());
        assert_eq!(
            refusal(admit_superuser(Principal::Anonymous)),
            (401, "The request requires valid superuser authorization token.".into())
        );
        let user = Principal::Record { collection_id: "c".into(), id: "u".into() };
        let forbidden = (403, "Only superusers can perform this action.".to_string());
        assert_eq!(refusal(admit_superuser(user)), forbidden);
        assert_eq!(refusal(admit_superuser(key_with(&[keys::METRICS_READ]))), forbidden);
    }

    #[test]
    fn capability_endpoints_admit_superusers_and_keys_holding_it() {
        assert!(admit_superuser_or_key_with(Principal::Superuser { id: "s".into() }, &METRICS_READ).is_ok());
        assert!(admit_superuser_or_key_with(key_with(&[keys::METRICS_READ]), &METRICS_READ).is_ok());
        assert_eq!(
            refusal(admit_superuser_or_key_with(key_with(&[keys::MAIL_SEND]), &METRICS_READ)),
            (
                403,
                "Only superusers and API keys with the metrics.read capability can read metrics and logs."
                    .into()
            )
        );
        assert_eq!(
            refusal(admit_superuser_or_key_with(Principal::Anonymous, &MAIL_SEND)),
            (401, "Sign in as a superuser or send an API key with the mail.send capability.".into())
        );
    }
}
