//! HTTP: the tiny_http server loop and everything between a request and a
//! handler: the pure router and Range parser, errors, handlers, downloads.

pub mod auth;
pub mod download;
pub mod error;
pub mod guard;
pub mod handlers;
pub mod openapi;
pub mod range;
pub mod ratelimit;
pub mod respond;
pub mod router;
pub mod server;
pub mod session;
