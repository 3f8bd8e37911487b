//! The embedded web page: one self-contained HTML file, no build step.

/// `GET /`: jobs, live progress and loss curve, checkpoints and downloads.
pub const INDEX_HTML: &str = include_str!("index.html");

/// The login form (`POST /login`), for a browser without a token; after a
/// wrong token it says so.
pub fn login_html(failed: bool) -> String {
    let message = if failed {
        r#"<p style="color:#b91c1c">That token is not valid.</p>"#
    } else {
        ""
    };
    include_str!("login.html").replace("<!--message-->", message)
}
