//! Retrying a failed write: the trainer pauses when a log line or a
//! checkpoint cannot be written (disk full, folder not writable) and tries
//! again on `Resume`. A headless run and a detached runner have nobody to
//! press resume, so they send it themselves, with backoff (1 s, doubling,
//! at most a minute apart). A headless run gives up after
//! `--give-up-after`; a detached runner keeps trying (a run left overnight
//! goes on once space is freed).

use crate::engine::control::Event;
use crate::session::Status;
use std::time::{Duration, Instant};

const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(60);

/// What a retry loop does next, from the trainer's status events.
#[derive(Debug, Default)]
pub struct StorageRetry {
    /// While a write is owed: since when, the next try, the delay after
    /// it, and the newest reason.
    owed: Option<Owed>,
}

#[derive(Debug)]
struct Owed {
    since: Instant,
    next: Instant,
    delay: Duration,
    reason: String,
}

/// What to say of a status event.
#[derive(Debug, PartialEq)]
pub enum Said {
    /// A write failed: the trainer's words (which write, why, what to do).
    Failed(String),
    /// The write owed went through after this long.
    Succeeded(Duration),
}

impl Said {
    /// The words for a log or terminal; `until`: how long tries go on.
    pub fn words(&self, until: &str) -> String {
        match self {
            Said::Failed(message) => format!(
                "{message}\nretrying the write with backoff ({} s, doubling, at most {} s apart) {until}",
                FIRST_DELAY.as_secs(),
                MAX_DELAY.as_secs()
            ),
            Said::Succeeded(after) => format!(
                "the write succeeded after {:.0} s: training goes on",
                after.as_secs_f64()
            ),
        }
    }
}

impl StorageRetry {
    /// A user paused the run: no more tries, which would resume it (the
    /// run stays paused until they resume it, which retries the write).
    pub fn user_paused(&mut self) {
        self.owed = None;
    }

    /// Follows the trainer's status; returns what to say, once per failure
    /// and once when it is over. A pause with a message is a failed write
    /// (a user's pause has none, and ends the retries).
    pub fn on_event(&mut self, event: &Event) -> Option<Said> {
        let Event::Status { status, message } = event else {
            return None;
        };
        match (status, message, &mut self.owed) {
            (Status::Paused, Some(message), Some(owed)) => {
                owed.reason.clone_from(message);
                None
            }
            (Status::Paused, Some(message), None) => {
                let now = Instant::now();
                self.owed = Some(Owed {
                    since: now,
                    next: now + FIRST_DELAY,
                    delay: FIRST_DELAY,
                    reason: message.clone(),
                });
                Some(Said::Failed(message.clone()))
            }
            (Status::Paused, None, _) => {
                self.owed = None;
                None
            }
            (_, _, owed) => owed.take().map(|o| Said::Succeeded(o.since.elapsed())),
        }
    }

    /// Whether it is time to send `Resume` (a try); moves the next one on.
    pub fn try_due(&mut self) -> bool {
        let Some(owed) = &mut self.owed else {
            return false;
        };
        if Instant::now() < owed.next {
            return false;
        }
        owed.delay = (owed.delay * 2).min(MAX_DELAY);
        owed.next = Instant::now() + owed.delay;
        true
    }

    /// How long writes have failed, and the newest reason, while they do.
    pub fn failing(&self) -> Option<(Duration, &str)> {
        self.owed
            .as_ref()
            .map(|o| (o.since.elapsed(), o.reason.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: Status, message: Option<&str>) -> Event {
        Event::Status {
            status,
            message: message.map(str::to_string),
        }
    }

    #[test]
    fn a_failed_write_is_said_once_retried_with_backoff_and_its_end_said() {
        let mut retry = StorageRetry::default();
        assert!(!retry.try_due(), "nothing owed");
        let full = status(Status::Paused, Some("paused: disk full"));
        assert_eq!(
            retry.on_event(&full),
            Some(Said::Failed("paused: disk full".into()))
        );
        assert!(!retry.try_due(), "the first try waits a second");
        std::thread::sleep(FIRST_DELAY);
        assert!(retry.try_due());
        assert!(!retry.try_due(), "the next waits twice as long");
        // The retry failed again: said once only, the reason kept.
        let again = status(Status::Paused, Some("paused: still full"));
        assert_eq!(retry.on_event(&again), None);
        assert_eq!(retry.failing().unwrap().1, "paused: still full");
        let went_on = retry.on_event(&status(Status::Running, None));
        assert!(matches!(went_on, Some(Said::Succeeded(d)) if d >= FIRST_DELAY));
        assert!(retry.failing().is_none() && !retry.try_due());
    }

    #[test]
    fn the_words_say_the_backoff_and_the_end() {
        let failed = Said::Failed("paused: disk full".into()).words("until it succeeds");
        assert_eq!(
            failed,
            "paused: disk full\nretrying the write with backoff (1 s, doubling, at most 60 s apart) until it succeeds"
        );
        let went_on = Said::Succeeded(Duration::from_secs(3)).words("");
        assert_eq!(went_on, "the write succeeded after 3 s: training goes on");
    }

    #[test]
    fn a_users_pause_is_not_retried() {
        let mut retry = StorageRetry::default();
        assert_eq!(retry.on_event(&status(Status::Paused, None)), None);
        retry.on_event(&status(Status::Paused, Some("paused: disk full")));
        // The user paused while a write was owed: no more tries.
        assert_eq!(retry.on_event(&status(Status::Paused, None)), None);
        std::thread::sleep(FIRST_DELAY);
        assert!(!retry.try_due());
        // A pause command seen before the trainer's answer: none either.
        retry.on_event(&status(Status::Paused, Some("paused: disk full")));
        retry.user_paused();
        std::thread::sleep(FIRST_DELAY);
        assert!(!retry.try_due());
    }
}
