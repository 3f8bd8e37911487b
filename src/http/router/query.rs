//! Query strings: decoded once, each parameter taken by the route that
//! knows it (leftovers and repeats are errors), and the job list's paging.

use super::{RouteError, percent};
use crate::names::JobId;
use crate::text::printable;

/// Which part of the job list to send (newest first): all of it, or a page
/// of at most `limit` jobs after the job `after` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paging {
    pub limit: Option<usize>,
    pub after: Option<Cursor>,
}

/// The most jobs a page holds.
pub const PAGE_MAX: usize = 1000;

/// Where a page of the job list ends: its last job's creation time and id
/// (the list's sort key), as `{created_at}_{id}`. A cursor stays valid when
/// its job is deleted meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub created_at: String,
    pub id: JobId,
}

impl Cursor {
    pub fn parse(text: &str) -> Option<Cursor> {
        let (created_at, id) = text.split_once('_')?;
        let stamp = |c: char| c.is_ascii_digit() || "TZ:.-+".contains(c);
        if created_at.len() > 40 || !created_at.chars().all(stamp) {
            return None;
        }
        Some(Cursor {
            created_at: created_at.to_owned(),
            id: JobId::parse(id).ok()?,
        })
    }

    /// The text `parse` reads back.
    pub fn render(&self) -> String {
        format!("{}_{}", self.created_at, self.id)
    }
}

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
