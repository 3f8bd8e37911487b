//! Login attempts per client address: at most [`ATTEMPTS`] in any
//! [`WINDOW`]; beyond that, 429 with the seconds until the window frees.
//! Tokens of 96 bits cannot be guessed at this pace, and a client that
//! tries is told to wait rather than answered as fast as it asks.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts allowed per address in a window.
pub const ATTEMPTS: usize = 10;
/// The sliding window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; the longest quiet goes first.
const CAPACITY: usize = 4096;

/// Recent login attempts by address.
#[derive(Default)]
pub struct LoginLimiter {
    recent: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// Records an attempt at `now`; `Err` carries how long to wait.
    pub fn attempt(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= CAPACITY && !recent.contains_key(&client) {
            recent.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < WINDOW)
            });
            if recent.len() >= CAPACITY {
                let quietest = recent
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(ip, _)| *ip);
                if let Some(ip) = quietest {
                    recent.remove(&ip);
                }
            }
        }
        let times = recent.entry(client).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        if times.len() >= ATTEMPTS {
            let oldest = *times.front().expect("ATTEMPTS > 0");
            return Err(WINDOW - now.duration_since(oldest));
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_limited_per_address_in_a_sliding_window() {
        let limiter = LoginLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..ATTEMPTS {
            assert!(
                limiter
                    .attempt(a, t0 + Duration::from_secs(i as u64))
                    .is_ok()
            );
        }
        let wait = limiter
            .attempt(a, t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        assert!(
            limiter.attempt(b, t0 + Duration::from_secs(20)).is_ok(),
            "others are not held up"
        );
        assert!(
            limiter.attempt(a, t0 + Duration::from_secs(60)).is_ok(),
            "the first attempt left the window"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..(CAPACITY as u32 + 100) {
            let ip = IpAddr::from(i.to_be_bytes());
            assert!(limiter.attempt(ip, t0).is_ok());
        }
        assert!(limiter.recent.lock().unwrap().len() <= CAPACITY);
    }
}
