//! Where a replicated queue lives ([`Placement`]): its Raft group and the
//! nodes that keep it, decided by the metadata group when it applies the
//! declaration ([`Placement::new`]) and when the cluster's voters change
//! ([`Placement::follow`]), the same on every node. Pure: no I/O here.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Replicated queues' groups are numbered from here (the metadata group
/// is 0): `GROUP_BASE` + the log index of the queue's declaration.
pub(super) const GROUP_BASE: u64 = 1 << 32;

/// Where a replicated queue lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Placement {
    /// Its Raft group.
    pub(super) group: u64,
    /// The nodes that keep it, the first of which starts the group.
    pub(super) members: Vec<u64>,
    /// How many it asked for (`replicas=`; 0 in a placement stored before
    /// this was: as many as its members).
    #[serde(default)]
    pub(super) replicas: u8,
}

impl Placement {
    /// The placement of a queue declared at metadata log index `index`
    /// with `replicas` copies over `voters` (sorted), given the queues
    /// placed so far: its first member (who starts the group, and so leads
    /// it first) is the voter that is first member of the fewest queues,
    /// the next voters after it the others. `None` when there are fewer
    /// voters than replicas.
    pub(super) fn new<'a>(
        index: u64,
        replicas: u8,
        voters: &[u64],
        placed: impl Iterator<Item = &'a Placement>,
    ) -> Option<Placement> {
        let n = usize::from(replicas);
        if voters.is_empty() || n > voters.len() {
            return None;
        }
        let mut firsts: HashMap<u64, usize> = HashMap::new();
        for p in placed {
            if let Some(first) = p.members.first() {
                *firsts.entry(*first).or_default() += 1;
            }
        }
        let start = (0..voters.len())
            .min_by_key(|i| firsts.get(&voters[*i]).copied().unwrap_or(0))
            .unwrap_or(0);
        let members = (0..n).map(|i| voters[(start + i) % voters.len()]).collect();
        Some(Placement {
            group: GROUP_BASE + index,
            members,
            replicas,
        })
    }

    /// The placement once the cluster's voters are `voters`, given every
    /// queue's placement (`placed`, this one's included): members that are
    /// no longer voters leave it, and while it has fewer members than its
    /// `replicas=`, the voters that are not members join, those that keep
    /// the fewest queues first (then by id). The same on every node (the
    /// metadata group applies it). A queue keeps at least one member (who
    /// is to copy it from, else?).
    pub(super) fn follow<'a>(
        &self,
        voters: &[u64],
        placed: impl Iterator<Item = &'a Placement>,
    ) -> Placement {
        let want = match self.replicas {
            0 => self.members.len(),
            r => usize::from(r),
        };
        let mut members: Vec<u64> = self
            .members
            .iter()
            .copied()
            .filter(|m| voters.contains(m))
            .collect();
        if members.is_empty() {
            return self.clone();
        }
        let mut load: HashMap<u64, usize> = HashMap::new();
        for p in placed {
            for m in &p.members {
                *load.entry(*m).or_default() += 1;
            }
        }
        let mut candidates: Vec<u64> = voters
            .iter()
            .copied()
            .filter(|v| !members.contains(v))
            .collect();
        candidates.sort_by_key(|v| (load.get(v).copied().unwrap_or(0), *v));
        for c in candidates {
            if members.len() >= want {
                break;
            }
            members.push(c);
        }
        Placement {
            members,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_take_turns_at_being_first_and_refuse_too_many_replicas() {
        let voters = [1, 2, 3];
        let mut placed: Vec<Placement> = Vec::new();
        for index in [10, 11, 17, 20, 21, 22] {
            let p = Placement::new(index, 3, &voters, placed.iter()).expect("placed");
            assert_eq!(p.group, GROUP_BASE + index);
            let mut sorted = p.members.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, voters);
            placed.push(p);
        }
        // Each voter is first (starts the group, leads it first) twice.
        for v in voters {
            let firsts = placed.iter().filter(|p| p.members[0] == v).count();
            assert_eq!(firsts, 2, "{placed:?}");
        }
        let two = Placement::new(30, 2, &voters, placed.iter()).expect("placed");
        assert_eq!(two.members.len(), 2);
        assert_eq!(Placement::new(31, 4, &voters, placed.iter()), None);
        assert_eq!(Placement::new(31, 1, &[], placed.iter()), None);
    }

    #[test]
    fn placements_follow_the_voters_replacing_who_left_and_growing_back() {
        let p = Placement::new(10, 3, &[1, 2, 3], std::iter::empty()).expect("placed");
        let other = Placement::new(11, 2, &[1, 2, 3, 4, 5], std::iter::empty()).expect("placed");
        let all = [p.clone(), other.clone()];
        // Unchanged while its members vote.
        assert_eq!(p.follow(&[1, 2, 3, 4], all.iter()), p);
        // Node 2 gone, 4 and 5 there: the one keeping fewer queues joins.
        let busy = other.members[0];
        let next = p.follow(&[1, 3, 4, 5], all.iter());
        assert_eq!(next.members.len(), 3, "{next:?}");
        assert!(!next.members.contains(&2), "{next:?}");
        assert_eq!(next.group, p.group);
        let joined = next.members[2];
        assert!(joined == 4 || joined == 5, "{next:?}");
        if busy == 4 || busy == 5 {
            assert_ne!(joined, busy, "{next:?} {other:?}");
        }
        // Short of voters: it shrinks, then grows back once there are.
        let short = p.follow(&[1, 3], all.iter());
        assert_eq!(short.members, vec![1, 3]);
        let back = short.follow(&[1, 3, 6], all.iter());
        assert_eq!(back.members, vec![1, 3, 6]);
        // Never emptied: with none of its members left, it stays.
        assert_eq!(p.follow(&[7, 8, 9], all.iter()), p);
    }
}
