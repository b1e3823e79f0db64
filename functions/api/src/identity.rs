//! Who is calling: the claims API Gateway's JWT authorizer verified and put in
//! `requestContext.authorizer.jwt`, and for a token holding the admin scope, the
//! caller's user item. Nothing in the body, path or headers can change it.

use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use session_core::ports::SessionStore;
use session_core::session::UserId;
use session_core::steps::authorize::parse_user_id;

use crate::error::ApiError;

/// What the verified token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub user_id: UserId,
    /// The token holds the admin scope: its app client may ask to act for others.
    pub admin_scope: bool,
}

impl Token {
    /// Reads the token from the verified claims: `claim` holds the user id, and the
    /// token's scopes (`scopes`, or a space-separated `scope` claim) may hold
    /// `admin_scope`. A token that says it is not an access token (Cognito's
    /// `token_use`) is refused: an ID token is meant for the client, carries no scopes,
    /// and its audience check differs. Providers that do not set the claim are trusted
    /// to have issued access tokens.
    pub fn from_request(req: &Request, claim: &str, admin_scope: &str) -> Result<Self, ApiError> {
        let Some(RequestContext::ApiGatewayV2(context)) = req.request_context_ref() else {
            return Err(ApiError::unauthenticated());
        };
        let jwt = context
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .ok_or_else(ApiError::unauthenticated)?;
        if let Some(token_use) = jwt.claims.get("token_use") {
            if token_use != "access" {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "only access tokens are accepted",
                ));
            }
        }
        let user_id = jwt
            .claims
            .get(claim)
            .map(|raw| serde_json::Value::String(raw.clone()));
        let user_id = parse_user_id(user_id.as_ref()).map_err(|_| ApiError::unauthenticated())?;
        let in_scopes = jwt
            .scopes
            .iter()
            .flatten()
            .any(|scope| scope == admin_scope);
        let in_scope_claim = jwt
            .claims
            .get("scope")
            .is_some_and(|scopes| scopes.split_whitespace().any(|s| s == admin_scope));
        Ok(Self {
            user_id,
            admin_scope: in_scopes || in_scope_claim,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    /// May act for any user.
    pub admin: bool,
}

impl Caller {
    /// An admin holds the admin scope and `admin = true` on their user item. With
    /// Cognito, scopes are granted per app client, so any user of a client allowed
    /// the scope can ask for it; the user item says who is an admin. The item is read
    /// only for a token holding the scope, so an ordinary call costs no read.
    pub async fn of(token: Token, store: &impl SessionStore) -> Result<Self, ApiError> {
        let admin = token.admin_scope
            && store
                .user(&token.user_id)
                .await?
                .is_some_and(|user| user.admin);
        Ok(Self {
            user_id: token.user_id,
            admin,
        })
    }

    /// The user a request acts for: the caller, or for an admin anyone named.
    pub fn acting_for(&self, named: Option<&str>) -> Result<String, ApiError> {
        match named {
            None => Ok(self.user_id.to_string()),
            Some(user) if self.user_id == user || self.admin => Ok(user.to_owned()),
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "user_id must be your own unless you are an admin",
            )),
        }
    }

    /// Whether the caller may see and act on a session of `owner`.
    pub fn may_access(&self, owner: &str) -> bool {
        self.admin || self.user_id == owner
    }
}
