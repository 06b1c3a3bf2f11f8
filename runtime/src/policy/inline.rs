//! Whether the consume loop runs a call itself or gives it a task.

use std::time::Duration;

/// The longest first poll the loop keeps running calls itself after.
const INLINE_MAX: Duration = Duration::from_micros(50);
/// Deliveries sent to tasks after two longer first polls in a row.
const INLINE_PAUSE: u32 = 1024;

/// A call that finishes at its first poll costs least run in the loop: no
/// task. But a handler that computes long before its first `.await` would
/// then run one call at a time on a multi-threaded runtime; so two first
/// polls in a row longer than [`INLINE_MAX`] send the next
/// [`INLINE_PAUSE`] deliveries straight to tasks, which run in parallel,
/// before the loop tries again. (One long poll alone is more often the
/// thread being preempted than the handler being slow.)
#[derive(Debug, Default)]
pub(crate) struct Inline {
    skip: u32,
    long_in_row: u32,
}

impl Inline {
    /// Whether the loop may run the next call itself.
    pub(crate) fn allowed(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// The loop ran a call's first poll, which took `first_poll`.
    pub(crate) fn took(&mut self, first_poll: Duration) {
        if first_poll <= INLINE_MAX {
            self.long_in_row = 0;
            return;
        }
        self.long_in_row += 1;
        if self.long_in_row >= 2 {
            self.long_in_row = 0;
            self.skip = INLINE_PAUSE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_first_polls_in_a_row_send_the_next_deliveries_to_tasks() {
        let mut inline = Inline::default();
        assert!(inline.allowed());
        inline.took(INLINE_MAX);
        assert!(
            inline.allowed(),
            "a first poll of INLINE_MAX is still short"
        );
        inline.took(INLINE_MAX * 2);
        inline.took(INLINE_MAX);
        inline.took(INLINE_MAX * 2);
        assert!(inline.allowed(), "one long poll between short ones passes");
        inline.took(INLINE_MAX * 2);
        let to_tasks = (0..INLINE_PAUSE + 1).filter(|_| !inline.allowed()).count();
        assert_eq!(to_tasks, INLINE_PAUSE as usize);
        assert!(inline.allowed(), "then the loop tries again");
    }
}
