//! The rules of signing in, apart from HTTP (the `/auth/*` pages are one skin over them,
//! a future UI another): which connection a person uses, who they are, which roles the
//! IdP gives them, and when they are refused.
//!
//! - Connection: an org's login URL (`?org=<slug>`) or the verified email domain
//!   (home-realm discovery: a domain belongs to one org) picks the org's own IdP when it
//!   has one; everyone else uses the platform IdP.
//! - Identity is issuer + `sub`. An existing user is claimed by email only by an IdP
//!   that is authoritative for the email's domain (the platform IdP, or the org's own
//!   for its domains), with a verified email, and never one known to another IdP.
//! - Roles: a connection's mappings grant roles only in orgs it may speak for (an org's
//!   IdP in its org only), and platform admin comes only from the platform IdP. Each
//!   sign-in makes the IdP-granted memberships exactly what the mappings give now.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use super::oidc::{Connection, Identity, OidcError};
use super::sealing::{SealError, Sealer};
use crate::store::audit::{self, Actor};
use crate::store::idp::{self, SealedConnection};
use crate::store::sessions::{self, Grant};
use crate::store::users::User;
use crate::store::{Pool, StoreError};

/// Why a sign-in was refused. [`SignInError::plain`] is what the person sees; the
/// variant's text (with its detail) goes to the log and the audit log only.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("sign-in is not configured")]
    NotConfigured,
    #[error("too many sign-in attempts")]
    Throttled,
    #[error("no such org or identity provider")]
    UnknownConnection,
    #[error("state missing, unknown, expired or not this browser's")]
    BadState,
    #[error("identity provider answered with an error: {0}")]
    Provider(String),
    #[error(transparent)]
    Oidc(#[from] OidcError),
    #[error("email domain {domain} belongs to another org's identity provider")]
    DomainOfAnotherOrg { domain: String },
    #[error("no verified email in the ID token")]
    NoVerifiedEmail,
    #[error("email {email} belongs to a person known to another identity provider")]
    EmailTaken { email: String },
    #[error("user is deactivated")]
    Deactivated,
    #[error("user has no role in any org")]
    NoRole,
    #[error("org connection secret cannot be opened")]
    Seal(#[from] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SignInError {
    /// What the person is told: plain words, no internals.
    pub fn plain(&self) -> &'static str {
        match self {
            Self::NotConfigured => "Sign-in is not set up on this Tollgate yet.",
            Self::Throttled => "Too many sign-in attempts. Wait a minute and try again.",
            Self::UnknownConnection => "There is no such organization to sign in to.",
            Self::BadState | Self::Provider(_) | Self::Oidc(_) => {
                "Sign-in did not complete. Please start again."
            }
            Self::DomainOfAnotherOrg { .. } => {
                "Your email address belongs to another organization: sign in through its identity provider."
            }
            Self::NoVerifiedEmail => "Your identity provider did not confirm your email address.",
            Self::EmailTaken { .. } => {
                "This email address is already used by another account — ask an admin."
            }
            Self::Deactivated => "Your account is deactivated — ask an admin.",
            Self::NoRole => "Your account has no role in any org yet — ask an admin.",
            Self::Seal(_) | Self::Store(_) => "Sign-in failed on our side. Please try again later.",
        }
    }

    /// The HTTP status of the page that says it.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Self::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Self::UnknownConnection => StatusCode::NOT_FOUND,
            Self::BadState | Self::Provider(_) | Self::Oidc(_) => StatusCode::BAD_REQUEST,
            Self::NotConfigured | Self::Seal(_) | Self::Store(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::FORBIDDEN,
        }
    }
}

/// Fixed one-minute windows per key: cheap, and enough to blunt a login flood.
#[derive(Debug)]
pub struct Throttle {
    limit: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Throttle {
    pub fn new(limit_per_minute: u32) -> Self {
        Self {
            limit: limit_per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key`; `false` once the minute's allowance is used up.
    pub fn allow(&self, key: &str, now: Instant) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = windows.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.limit
    }
}

/// A completed sign-in: who, and what it changed.
#[derive(Debug)]
pub struct SignedIn {
    pub user: User,
    pub synced: sessions::Synced,
}

pub struct SignIn {
    pub oidc: super::oidc::Oidc,
    /// The platform IdP, if configured.
    pub platform: Option<Connection>,
    /// Opens orgs' sealed client secrets; `None` = org connections cannot be used.
    pub sealer: Option<std::sync::Arc<Sealer>>,
    pub admin_groups: Vec<String>,
    pub per_ip: Throttle,
    pub per_connection: Throttle,
}

impl SignIn {
    /// Counts an attempt from `ip` on `connection`; refused past either limit.
    pub fn throttle(&self, ip: &str, connection: &Connection) -> Result<(), SignInError> {
        let now = Instant::now();
        let ip_ok = self.per_ip.allow(ip, now);
        let connection_ok = self.per_connection.allow(&connection.issuer, now);
        if ip_ok && connection_ok {
            Ok(())
        } else {
            Err(SignInError::Throttled)
        }
    }

    fn open(&self, sealed: SealedConnection) -> Result<Connection, SignInError> {
        let sealer = self.sealer.as_ref().ok_or(SignInError::NotConfigured)?;
        let secret = sealer.open(&sealed.client_secret_ciphertext, sealed.org_id.as_bytes())?;
        Ok(Connection {
            issuer: sealed.issuer,
            client_id: sealed.client_id,
            client_secret: secret,
            groups_claim: sealed.groups_claim,
            org_id: Some(sealed.org_id),
        })
    }

    fn platform(&self) -> Result<Connection, SignInError> {
        self.platform.clone().ok_or(SignInError::NotConfigured)
    }

    /// The connection for a login: by org slug, else by email domain, else the platform's.
    pub async fn connection_for(
        &self,
        pool: &Pool,
        org_slug: Option<&str>,
        email: Option<&str>,
    ) -> Result<Connection, SignInError> {
        if let Some(slug) = org_slug {
            let org = idp::org_by_slug(pool, slug)
                .await?
                .ok_or(SignInError::UnknownConnection)?;
            return match idp::sealed_connection_of_org(pool, org).await? {
                Some(sealed) => self.open(sealed),
                None => self.platform(),
            };
        }
        if let Some(domain) = email.and_then(|e| e.rsplit_once('@')).map(|(_, d)| d)
            && let Some(org) = idp::org_of_domain(pool, domain).await?
            && let Some(sealed) = idp::sealed_connection_of_org(pool, org).await?
        {
            return self.open(sealed);
        }
        self.platform()
    }

    /// The connection a login flow was started with.
    pub async fn connection_by_issuer(
        &self,
        pool: &Pool,
        issuer: &str,
    ) -> Result<Connection, SignInError> {
        if let Some(platform) = &self.platform
            && platform.issuer == issuer
        {
            return Ok(platform.clone());
        }
        match idp::sealed_connection_by_issuer(pool, issuer).await? {
            Some(sealed) => self.open(sealed),
            None => Err(SignInError::UnknownConnection),
        }
    }

    /// Applies the rules to a verified identity: finds or creates the user, syncs its
    /// IdP-granted roles, and refuses a person with no role anywhere. Everything it
    /// changes is audited, in one transaction.
    pub async fn complete(
        &self,
        pool: &Pool,
        connection: &Connection,
        identity: &Identity,
        actor: &Actor,
    ) -> Result<SignedIn, SignInError> {
        let email_domain = identity
            .email
            .as_deref()
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        let domain_org = match &email_domain {
            Some(domain) => idp::org_of_domain(pool, domain).await?,
            None => None,
        };
        // An email in a domain some org owns is that org's: only its own IdP (or the
        // platform IdP, when the org has none) may sign it in.
        if let Some(owner) = domain_org {
            let owner_has_idp = idp::sealed_connection_of_org(pool, owner).await?.is_some();
            let allowed = match connection.org_id {
                Some(org) => org == owner,
                None => !owner_has_idp,
            };
            if !allowed {
                return Err(SignInError::DomainOfAnotherOrg {
                    domain: email_domain.unwrap_or_default(),
                });
            }
        }
        let authoritative = match connection.org_id {
            None => true,
            Some(org) => domain_org == Some(org),
        };

        let mut tx = pool.begin().await.map_err(StoreError::from)?;
        let user = match sessions::user_for_identity(&mut tx, &identity.issuer, &identity.subject)
            .await?
        {
            Some(user) => user,
            None => {
                let email = identity
                    .email
                    .as_deref()
                    .filter(|_| identity.email_verified)
                    .ok_or(SignInError::NoVerifiedEmail)?;
                let user = match sessions::find_user_by_email(&mut tx, email).await? {
                    Some(existing) => {
                        let elsewhere =
                            sessions::has_other_identity(&mut tx, existing.id, &identity.issuer)
                                .await?;
                        if !authoritative || elsewhere {
                            return Err(SignInError::EmailTaken {
                                email: email.to_owned(),
                            });
                        }
                        existing
                    }
                    None => sessions::create_user(&mut tx, email, &identity.name).await?,
                };
                sessions::link_identity(&mut tx, &identity.issuer, &identity.subject, user.id)
                    .await?;
                audit::record(
                    &mut tx,
                    actor,
                    connection.org_id,
                    "create",
                    "identity",
                    &user.id.to_string(),
                    None,
                    Some(json!({"issuer": identity.issuer, "subject": identity.subject, "email": user.email})),
                )
                .await?;
                user
            }
        };
        if sessions::is_deactivated(&mut tx, user.id).await? {
            return Err(SignInError::Deactivated);
        }

        let mappings = idp::mappings_of_issuer(pool, &connection.issuer, connection.org_id).await?;
        let mut orgs: Vec<Uuid> = match connection.org_id {
            Some(org) => vec![org],
            None => mappings.iter().map(|m| m.org_id).collect(),
        };
        orgs.sort();
        orgs.dedup();
        let mut grants = Vec::new();
        for m in &mappings {
            if identity.values(&m.claim).contains(&m.value.as_str()) {
                let grant = Grant {
                    org_id: m.org_id,
                    team_id: m.team_id,
                    role: m.role.clone(),
                };
                if !grants.contains(&grant) {
                    grants.push(grant);
                }
            }
        }
        let synced = sessions::sync_idp_memberships(&mut tx, user.id, &orgs, &grants).await?;
        for (action, list) in [("create", &synced.added), ("delete", &synced.removed)] {
            for grant in list {
                let value = json!({"user_id": user.id, "org_id": grant.org_id, "team_id": grant.team_id, "role": grant.role, "source": "idp"});
                let (before, after) = if action == "create" {
                    (None, Some(value))
                } else {
                    (Some(value), None)
                };
                audit::record(
                    &mut tx,
                    actor,
                    Some(grant.org_id),
                    action,
                    "membership",
                    &user.id.to_string(),
                    before,
                    after,
                )
                .await?;
            }
        }
        if connection.org_id.is_none() {
            let admin = identity
                .values(&connection.groups_claim)
                .iter()
                .any(|g| self.admin_groups.iter().any(|a| a == g));
            sessions::set_idp_platform_admin(&mut tx, user.id, admin).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(SignedIn { user, synced })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_allows_its_limit_per_minute_and_then_refuses() {
        let t = Throttle::new(3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(t.allow("1.2.3.4", start));
        }
        assert!(!t.allow("1.2.3.4", start), "fourth in the same minute");
        assert!(
            t.allow("5.6.7.8", start),
            "another key has its own allowance"
        );
        assert!(
            t.allow("1.2.3.4", start + Duration::from_secs(61)),
            "a new minute"
        );
    }

    #[test]
    fn people_are_told_plain_words_without_details() {
        let e = SignInError::Provider("invalid_grant: secret detail".into());
        assert!(!e.plain().contains("secret detail"));
        assert_eq!(
            SignInError::NoRole.plain(),
            "Your account has no role in any org yet — ask an admin."
        );
    }
}
