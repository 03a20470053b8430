//! What a job keeps from its last checkpoint when its model changed: one decision, read by the
//! worker when it starts and by `plan` when it shows what `apply` will do.

/// What a job keeps from its last checkpoint when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarryOver {
    /// Same query: state and offsets.
    Resume,
    /// A changed query with no state on either side: the offsets, so no input is read twice.
    KeepOffsets,
    /// A changed stateful query: new state, built by reading from the replay position.
    Replay,
}

pub fn carry_over(old_hash: &str, old_stateful: bool, new_hash: &str, new_stateful: bool) -> CarryOver {
    if old_hash == new_hash {
        CarryOver::Resume
    } else if !old_stateful && !new_stateful {
        CarryOver::KeepOffsets
    } else {
        CarryOver::Replay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_hash_resumes_changed_stateless_keeps_offsets_changed_stateful_replays() {
        assert_eq!(carry_over("a", true, "a", true), CarryOver::Resume);
        assert_eq!(carry_over("a", false, "b", false), CarryOver::KeepOffsets);
        assert_eq!(carry_over("a", false, "b", true), CarryOver::Replay);
        assert_eq!(carry_over("a", true, "b", false), CarryOver::Replay);
    }
}
