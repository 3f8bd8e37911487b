//! Query strings: decoded once, each parameter taken by the route that
//! knows it (leftovers and repeats are errors), and the job list's paging.

use super::{RouteError, percent};
use crate::compare::Better;
use crate::names::{Cursor, JobId};
use crate::text::printable;

/// Which part of the job list to send (newest first): all of it, or a page
/// of at most `limit` jobs after the job `after` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paging {
    pub limit: Option<usize>,
    pub after: Option<Cursor>,
}

/// Which downloads of the audit to send, newest first: of one job or all,
/// at most `limit` (default [`AUDIT_PAGE_DEFAULT`]), before sequence
/// number `before`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub job: Option<JobId>,
    pub limit: usize,
    pub before: Option<u64>,
}

pub const AUDIT_PAGE_DEFAULT: usize = 100;

/// Which jobs to compare, on which metric, and which way it is better
/// (guessed from its name when not given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareQuery {
    pub jobs: Vec<JobId>,
    pub metric: String,
    pub better: Option<Better>,
}

/// The most jobs a page holds.
pub const PAGE_MAX: usize = 1000;

/// A decoded query string; each parameter is taken once by the route that
/// knows it, and whatever is left over is an error.
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(raw: &str) -> Result<Query, RouteError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            let decode = |s: &str| {
                percent::form_decode(s.as_bytes())
                    .ok_or_else(|| RouteError::BadQuery("Invalid query string".into()))
            };
            let (key, value) = (decode(key)?, decode(value)?);
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(RouteError::BadQuery(format!(
                    "Repeated query parameter '{}'",
                    printable(&key)
                )));
            }
            pairs.push((key, value));
        }
        Ok(Query(pairs))
    }

    pub(super) fn take(&mut self, key: &str) -> Option<String> {
        let index = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(index).1)
    }

    pub(super) fn finish(self) -> Result<(), RouteError> {
        match self.0.first() {
            None => Ok(()),
            Some((key, _)) => Err(RouteError::BadQuery(format!(
                "Unknown query parameter '{}'",
                printable(key)
            ))),
        }
    }
}
