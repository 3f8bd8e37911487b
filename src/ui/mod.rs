//! The embedded web page: markup, script and style as three files, no
//! build step. Script and style are separate so that the page's
//! Content-Security-Policy can forbid anything inline.

/// `GET /ui/app.js`.
pub const APP_JS: &str = include_str!("app.js");
/// `GET /ui/app.css` (the login form uses it too).
pub const APP_CSS: &str = include_str!("app.css");
/// `GET /ui/icon.svg`: the tab's icon.
pub const ICON_SVG: &str = include_str!("icon.svg");

/// `GET /`: jobs, live progress and loss curve, checkpoints and downloads.
/// `signed_in` when the server runs with tokens, so the page offers to
/// sign out.
pub fn index_html(signed_in: bool) -> String {
    let page = include_str!("index.html");
    if signed_in {
        page.replacen("<body>", r#"<body data-signed-in="true">"#, 1)
    } else {
        page.to_owned()
    }
}

/// The login form (`POST /login`), for a browser without a session; after
/// a wrong token it says so.
pub fn login_html(failed: bool) -> String {
    let message = if failed {
        r#"<p class="error">That token is not valid.</p>"#
    } else {
        ""
    };
    include_str!("login.html").replace("<!--message-->", message)
}
