//! The web console's files (`gateway/console/`), served on the login host to users the
//! load balancer signed in (docs/console.md). Embedded in the binary: nothing to
//! deploy beside it and no build step.

/// `GET /_gateway/whoami`: the signed-in user, as the console shows them.
pub const WHOAMI_PATH: &str = "/_gateway/whoami";

/// The console's pages load their own script and style sheet only, and talk to their
/// own origin only: no inline script, no other site, no framing.
pub const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// One file of the console.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    pub body: &'static str,
    pub content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("../console/index.html"),
    content_type: "text/html; charset=utf-8",
};
const SCRIPT: Asset = Asset {
    body: include_str!("../console/console.js"),
    content_type: "text/javascript; charset=utf-8",
};
const STYLE: Asset = Asset {
    body: include_str!("../console/console.css"),
    content_type: "text/css; charset=utf-8",
};

/// The console's file at `path` (the query left out), if it is one.
pub fn asset(path: &str) -> Option<&'static Asset> {
    match path {
        "/" | "/index.html" => Some(&INDEX),
        "/_console/console.js" => Some(&SCRIPT),
        "/_console/console.css" => Some(&STYLE),
        _ => None,
    }
}

/// The body of [`WHOAMI_PATH`].
pub fn whoami(user_id: &str) -> String {
    serde_json::json!({ "user_id": user_id }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_its_script_and_its_style_sheet_are_served_and_nothing_else() {
        assert_eq!(asset("/").unwrap().content_type, "text/html; charset=utf-8");
        assert_eq!(
            asset("/_console/console.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            asset("/_console/console.css").unwrap().content_type,
            "text/css; charset=utf-8"
        );
        for path in ["/_console/", "/_console/../console.js", "/console.js", "/x"] {
            assert_eq!(asset(path), None, "{path}");
        }
    }

    #[test]
    fn the_page_loads_only_what_its_policy_allows() {
        let page = INDEX.body;
        assert!(page.contains(r#"<script src="/_console/console.js" defer></script>"#));
        assert!(page.contains(r#"<link rel="stylesheet" href="/_console/console.css">"#));
        // No inline script or style, which the policy would block.
        assert_eq!(page.matches("<script").count(), 1);
        assert!(!page.contains("<style") && !page.contains(" style="));
        assert!(!POLICY.contains("unsafe"));
    }

    #[test]
    fn whoami_is_json_whatever_the_user_id_holds() {
        let body: serde_json::Value = serde_json::from_str(&whoami("a\"b</script>")).unwrap();
        assert_eq!(body["user_id"], "a\"b</script>");
    }
}
