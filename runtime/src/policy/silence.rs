//! When a waiting pull has gone silent.

/// Counts heartbeat periods without a word from the server (a message, a
/// status or a heartbeat). A waiting pull asks the server for a heartbeat
/// every period, so two silent periods in a row mean its requests are
/// gone; async-nats would only report that, and ask again when the pull
/// expires.
#[derive(Debug, Default)]
pub(crate) struct Silence {
    heard: bool,
    silent: u32,
}

/// Silent periods in a row that end a pull.
const PERIODS: u32 = 2;

impl Silence {
    /// The server said something.
    pub(crate) fn heard(&mut self) {
        self.heard = true;
    }

    /// A heartbeat period ended: whether the pull is to be given up.
    pub(crate) fn period_ended(&mut self) -> bool {
        if std::mem::take(&mut self.heard) {
            self.silent = 0;
        } else {
            self.silent += 1;
        }
        self.silent >= PERIODS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_silent_periods_in_a_row_end_the_pull() {
        let mut s = Silence::default();
        assert!(!s.period_ended(), "one silent period is not enough");
        s.heard();
        assert!(!s.period_ended(), "a word resets the count");
        assert!(!s.period_ended());
        assert!(s.period_ended());
    }

    #[test]
    fn a_chatty_server_is_never_silent() {
        let mut s = Silence::default();
        for _ in 0..100 {
            s.heard();
            assert!(!s.period_ended());
        }
    }
}
