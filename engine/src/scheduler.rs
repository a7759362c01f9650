//! The scheduler of a workspace of runs: which run takes the next step.
//!
//! Runs take turns, one step each in the order they were added (round robin over the active
//! runs), so runs started together advance together and a run added later neither stalls nor
//! is stalled by the others. A run's numbers never depend on the schedule, because every run
//! owns its model, optimiser and random streams ([`crate::train::Trainer`]); the scheduler only
//! decides the order.

/// What a run in the workspace is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Active,
    /// Paused by the user; resumes where it was.
    Paused,
    /// Reached its step budget.
    Done,
    /// Stopped alone: its loss became NaN or infinite.
    Diverged,
}

#[derive(Debug, Default)]
pub struct Scheduler {
    /// (run id, steps taken, state), in the order the runs were added.
    runs: Vec<(u32, usize, Slot)>,
    /// The run that stepped last (the turn passes to the next active run after it).
    last: Option<u32>,
}

impl Scheduler {
    pub fn add(&mut self, id: u32) {
        self.remove(id);
        self.runs.push((id, 0, Slot::Active));
    }

    pub fn remove(&mut self, id: u32) {
        self.runs.retain(|(r, _, _)| *r != id);
    }

    pub fn set(&mut self, id: u32, slot: Slot) {
        if let Some(run) = self.runs.iter_mut().find(|(r, _, _)| *r == id) {
            run.2 = slot;
        }
    }

    pub fn slot(&self, id: u32) -> Option<Slot> {
        self.runs.iter().find(|(r, _, _)| *r == id).map(|(_, _, s)| *s)
    }

    /// Records that run `id` took a step.
    pub fn stepped(&mut self, id: u32) {
        if let Some(run) = self.runs.iter_mut().find(|(r, _, _)| *r == id) {
            run.1 += 1;
            self.last = Some(id);
        }
    }

    /// Steps run `id` has taken.
    pub fn steps(&self, id: u32) -> usize {
        self.runs.iter().find(|(r, _, _)| *r == id).map_or(0, |(_, s, _)| *s)
    }

    /// The run that takes the next step, or `None` when no run is active.
    pub fn next(&self) -> Option<u32> {
        let start = self.last.and_then(|l| self.runs.iter().position(|(r, _, _)| *r == l)).map_or(0, |i| i + 1);
        let n = self.runs.len();
        (0..n).map(|k| &self.runs[(start + k) % n]).find(|(_, _, s)| *s == Slot::Active).map(|(id, _, _)| *id)
    }

    pub fn ids(&self) -> Vec<u32> {
        self.runs.iter().map(|(id, _, _)| *id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_take_turns_and_paused_or_stopped_runs_wait() {
        let mut s = Scheduler::default();
        for id in [7, 3, 9] {
            s.add(id);
        }
        let mut order = Vec::new();
        for _ in 0..6 {
            let id = s.next().unwrap();
            order.push(id);
            s.stepped(id);
        }
        assert_eq!(order, [7, 3, 9, 7, 3, 9], "round robin in the order added");
        s.set(3, Slot::Paused);
        s.set(9, Slot::Diverged);
        assert_eq!(s.next(), Some(7));
        s.stepped(7);
        assert_eq!(s.next(), Some(7), "the others wait");
        s.set(3, Slot::Active);
        assert_eq!(s.next(), Some(3), "the turn passes on from the last run that stepped");
        s.stepped(3);
        assert_eq!(s.next(), Some(7));
        assert_eq!((s.steps(7), s.steps(3), s.steps(9)), (3, 3, 2));
        s.remove(7);
        s.set(3, Slot::Done);
        assert_eq!(s.next(), None);
    }
}
