//! What a route without a policy block allows
//! (`Router__OnMissingAuthorization`; see the crate documentation).

/// What happens on a route that has no policy (`Router__OnMissingAuthorization`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingAuthorization {
    /// 403 for every request.
    Deny,
    /// Any valid identity passes.
    RequireAuthenticated,
    /// Anyone passes, as on an anonymous route.
    AllowAnonymous,
}

impl MissingAuthorization {
    pub fn as_str(self) -> &'static str {
        match self {
            MissingAuthorization::Deny => "Deny",
            MissingAuthorization::RequireAuthenticated => "RequireAuthenticated",
            MissingAuthorization::AllowAnonymous => "AllowAnonymous",
        }
    }

    /// Case-insensitive, `_` and `-` ignored (`require_authenticated`).
    pub fn parse(text: &str) -> Option<MissingAuthorization> {
        match text
            .trim()
            .to_ascii_lowercase()
            .replace(['_', '-'], "")
            .as_str()
        {
            "deny" => Some(MissingAuthorization::Deny),
            "requireauthenticated" => Some(MissingAuthorization::RequireAuthenticated),
            "allowanonymous" => Some(MissingAuthorization::AllowAnonymous),
            _ => None,
        }
    }
}
