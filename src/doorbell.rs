//! A doorbell: rung when a job or a download changes state, so that what
//! follows the state (systemd's `STATUS=` line) is refreshed at once
//! rather than at the next periodic update. Rings that come before anyone
//! answers count as one.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// The ringing side; cheap to clone. A default doorbell rings nowhere.
#[derive(Debug, Clone, Default)]
pub struct Doorbell(Option<SyncSender<()>>);

impl Doorbell {
    /// A doorbell and the side that hears it.
    pub fn new() -> (Doorbell, Receiver<()>) {
        let (tx, rx) = sync_channel(1);
        (Doorbell(Some(tx)), rx)
    }

    /// Rings; never blocks (a ring already waiting covers this one).
    pub fn ring(&self) {
        if let Some(tx) = &self.0 {
            let _ = tx.try_send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_coalesce_and_a_silent_doorbell_is_harmless() {
        let (bell, heard) = Doorbell::new();
        bell.ring();
        bell.ring();
        bell.clone().ring();
        assert!(heard.try_recv().is_ok());
        assert!(
            heard.try_recv().is_err(),
            "three rings before an answer are one"
        );
        Doorbell::default().ring();
    }
}
