//! Who is calling: the claims API Gateway's JWT authorizer verified and put in
//! `requestContext.authorizer.jwt`. Nothing in the body, path or headers can change it.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use session_core::steps::authorize::parse_user_id;

use crate::error::ApiError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    /// Holds the admin scope: may act for any user.
    pub admin: bool,
}

impl Caller {
    /// Reads the caller from the verified claims: `claim` holds the user id, and the
    /// token's scopes (`scopes`, or a space-separated `scope` claim) may hold
    /// `admin_scope`.
    pub fn from_request(req: &Request, claim: &str, admin_scope: &str) -> Result<Self, ApiError> {
        let Some(RequestContext::ApiGatewayV2(context)) = req.request_context_ref() else {
            return Err(ApiError::unauthenticated());
        };
        let jwt = context
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .ok_or_else(ApiError::unauthenticated)?;
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
            admin: in_scopes || in_scope_claim,
        })
    }

    /// The user a request acts for: the caller, or with the admin scope anyone named.
    pub fn acting_for(&self, named: Option<&str>) -> Result<String, ApiError> {
        match named {
            None => Ok(self.user_id.clone()),
            Some(user) if user == self.user_id || self.admin => Ok(user.to_owned()),
            Some(_) => Err(ApiError::new(
                lambda_http::http::StatusCode::FORBIDDEN,
                "forbidden",
                "user_id must be your own unless you hold the admin scope",
            )),
        }
    }

    /// Whether the caller may see and act on a session of `owner`.
    pub fn may_access(&self, owner: &str) -> bool {
        self.admin || self.user_id == owner
    }
}
