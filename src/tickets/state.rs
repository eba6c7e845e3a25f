//! The one place a ticket's state changes: a pure function of the state, who acts, and what they do.
//!
//! The store reads a ticket, asks [`transition`] what becomes of it, and writes the answer with the event
//! it names; an illegal action is an error that the store turns into a refusal, changing nothing.

use crate::classify::{Category, Priority};

use super::{EventKind, ResponderId, Status};

/// The part of a ticket that actions change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub status: Status,
    pub assignee: Option<ResponderId>,
    pub category: Category,
    pub priority: Priority,
    /// Whether a responder has answered the driver yet.
    pub responded: bool,
}

/// Who acts: a responder, a supervisor (who may act on any ticket), or suqiu itself (SLA escalations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Responder(ResponderId),
    Supervisor(ResponderId),
    System,
}

impl Actor {
    pub fn responder(self) -> Option<ResponderId> {
        match self {
            Actor::Responder(id) | Actor::Supervisor(id) => Some(id),
            Actor::System => None,
        }
    }

    /// Whether the actor may act on a ticket `assignee` owns.
    fn may_act_for(self, assignee: Option<ResponderId>) -> bool {
        match self {
            Actor::Responder(id) => assignee == Some(id),
            Actor::Supervisor(_) | Actor::System => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Claim,
    /// A message to the driver: the first one is the ticket's first response.
    Reply,
    /// An internal note: the driver does not see it, and it is not a response.
    Note,
    Transfer {
        to: ResponderId,
    },
    Reclassify {
        category: Category,
    },
    /// The classifier was wrong: the message was chatter. Closes the ticket and records the correction.
    NotAnAppeal,
    Resolve,
    Reopen,
    /// An SLA deadline came near or passed: one step more urgent.
    Escalate,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Claim => "claim",
            Action::Reply => "reply",
            Action::Note => "note",
            Action::Transfer { .. } => "transfer",
            Action::Reclassify { .. } => "reclassify",
            Action::NotAnAppeal => "not an appeal",
            Action::Resolve => "resolve",
            Action::Reopen => "reopen",
            Action::Escalate => "escalate",
        }
    }
}

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the ticket is already claimed by responder {0}")]
    AlreadyClaimed(i64),
    #[error("the ticket must be claimed first")]
    NotClaimed,
    #[error("the ticket belongs to responder {0}")]
    NotAssignee(i64),
    #[error("the ticket is {0}: reopen it first")]
    Finished(Status),
    #[error("the ticket is {0}, not resolved or closed")]
    NotFinished(Status),
    #[error("the ticket is already in category {0}")]
    SameCategory(Category),
    #[error("the ticket already belongs to responder {0}")]
    SameAssignee(i64),
    #[error("only suqiu itself escalates tickets")]
    NotSystem,
}

/// What an allowed action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub state: State,
    pub event: EventKind,
    /// This reply is the ticket's first response: its first-response deadline is met.
    pub first_response: bool,
}

pub fn transition(state: State, actor: Actor, action: Action) -> Result<Change, Refusal> {
    use Status::*;
    let mut next = state;
    let change = |next: State, event: EventKind| Change {
        state: next,
        event,
        first_response: false,
    };
    if state.status.is_finished() && !matches!(action, Action::Reopen | Action::Note) {
        return Err(Refusal::Finished(state.status));
    }
    let owner_check = || match state.assignee {
        Some(owner) if !actor.may_act_for(Some(owner)) => Err(Refusal::NotAssignee(owner.0)),
        _ => Ok(()),
    };
    match action {
        Action::Claim => match state.assignee {
            Some(owner) => Err(Refusal::AlreadyClaimed(owner.0)),
            None => {
                next.status = Claimed;
                next.assignee = actor.responder();
                Ok(change(next, EventKind::Claimed))
            }
        },
        Action::Reply => {
            if state.status == Open {
                return Err(Refusal::NotClaimed);
            }
            owner_check()?;
            next.status = Responded;
            next.responded = true;
            Ok(Change {
                state: next,
                event: EventKind::Replied,
                first_response: !state.responded,
            })
        }
        Action::Note => Ok(change(next, EventKind::Noted)),
        Action::Transfer { to } => {
            if state.assignee == Some(to) {
                return Err(Refusal::SameAssignee(to.0));
            }
            if state.status == Open && !matches!(actor, Actor::Supervisor(_)) {
                return Err(Refusal::NotClaimed);
            }
            owner_check()?;
            if state.status == Open {
                next.status = Claimed;
            }
            next.assignee = Some(to);
            Ok(change(next, EventKind::Transferred))
        }
        Action::Reclassify { category } => {
            if category == state.category {
                return Err(Refusal::SameCategory(category));
            }
            owner_check()?;
            next.category = category;
            next.priority = category.default_priority();
            Ok(change(next, EventKind::Reclassified))
        }
        Action::NotAnAppeal => {
            owner_check()?;
            next.status = Closed;
            Ok(change(next, EventKind::Reclassified))
        }
        Action::Resolve => {
            if state.status == Open {
                return Err(Refusal::NotClaimed);
            }
            owner_check()?;
            next.status = Resolved;
            Ok(change(next, EventKind::Resolved))
        }
        Action::Reopen => {
            if !state.status.is_finished() {
                return Err(Refusal::NotFinished(state.status));
            }
            next.status = Open;
            next.assignee = None;
            Ok(change(next, EventKind::Reopened))
        }
        Action::Escalate => {
            if actor != Actor::System {
                return Err(Refusal::NotSystem);
            }
            next.priority = match state.priority {
                Priority::P3 => Priority::P2,
                Priority::P2 | Priority::P1 => Priority::P1,
            };
            Ok(change(next, EventKind::Escalated))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: ResponderId = ResponderId(1);
    const OTHER: ResponderId = ResponderId(2);

    fn state(status: Status) -> State {
        State {
            status,
            assignee: (status != Status::Open).then_some(ME),
            category: Category::Breakdown,
            priority: Priority::P2,
            responded: status == Status::Responded,
        }
    }

    fn actions() -> [Action; 9] {
        [
            Action::Claim,
            Action::Reply,
            Action::Note,
            Action::Transfer { to: OTHER },
            Action::Reclassify {
                category: Category::Accident,
            },
            Action::NotAnAppeal,
            Action::Resolve,
            Action::Reopen,
            Action::Escalate,
        ]
    }

    /// The expected outcome of every action by the assignee (or, on an open ticket, by a responder), as
    /// the status after it, or the refusal.
    fn expected(status: Status, action: Action) -> Result<Status, Refusal> {
        use Status::*;
        let finished = Err(Refusal::Finished(status));
        match (status, action) {
            (Resolved | Closed, Action::Reopen) => Ok(Open),
            (_, Action::Reopen) => Err(Refusal::NotFinished(status)),
            (s, Action::Note) => Ok(s),
            (Resolved | Closed, _) => finished,
            (Open, Action::Claim) => Ok(Claimed),
            (_, Action::Claim) => Err(Refusal::AlreadyClaimed(ME.0)),
            (Open, Action::Reply | Action::Resolve | Action::Transfer { .. }) => Err(Refusal::NotClaimed),
            (_, Action::Reply) => Ok(Responded),
            (s, Action::Transfer { .. } | Action::Reclassify { .. }) => Ok(s),
            (_, Action::NotAnAppeal) => Ok(Closed),
            (_, Action::Resolve) => Ok(Resolved),
            (_, Action::Escalate) => Err(Refusal::NotSystem),
        }
    }

    #[test]
    fn every_state_and_action_by_the_owner() {
        for status in Status::ALL {
            for action in actions() {
                let got = transition(state(status), Actor::Responder(ME), action).map(|c| c.state.status);
                assert_eq!(got, expected(status, action), "{status} × {}", action.name());
            }
        }
    }

    #[test]
    fn every_state_and_action_by_another_responder() {
        for status in Status::ALL {
            for action in actions() {
                let got = transition(state(status), Actor::Responder(OTHER), action).map(|c| c.state.status);
                let owned = matches!(status, Status::Claimed | Status::Responded);
                let want = match (owned, action) {
                    // Another responder may read and annotate a ticket, not work it.
                    (
                        true,
                        Action::Reply
                        | Action::Resolve
                        | Action::NotAnAppeal
                        | Action::Reclassify { .. }
                        | Action::Transfer { .. },
                    ) => Err(Refusal::NotAssignee(ME.0)),
                    _ => expected(status, action),
                };
                assert_eq!(got, want, "{status} × {}", action.name());
            }
        }
    }

    #[test]
    fn a_supervisor_may_assign_an_open_ticket_and_act_on_anyones() {
        let assigned = transition(
            state(Status::Open),
            Actor::Supervisor(OTHER),
            Action::Transfer { to: ME },
        )
        .unwrap();
        assert_eq!(
            (assigned.state.status, assigned.state.assignee),
            (Status::Claimed, Some(ME))
        );
        let resolved = transition(state(Status::Responded), Actor::Supervisor(OTHER), Action::Resolve).unwrap();
        assert_eq!(resolved.state.status, Status::Resolved);
    }

    #[test]
    fn only_the_first_reply_is_the_first_response() {
        let first = transition(state(Status::Claimed), Actor::Responder(ME), Action::Reply).unwrap();
        assert!(first.first_response);
        let second = transition(first.state, Actor::Responder(ME), Action::Reply).unwrap();
        assert!(!second.first_response);
        let note = transition(state(Status::Claimed), Actor::Responder(ME), Action::Note).unwrap();
        assert!(!note.first_response && note.state.status == Status::Claimed);
    }

    #[test]
    fn reclassifying_takes_the_new_categorys_priority_and_escalation_raises_it_one_step() {
        let to_accident = transition(
            state(Status::Claimed),
            Actor::Responder(ME),
            Action::Reclassify {
                category: Category::Accident,
            },
        )
        .unwrap();
        assert_eq!(
            (to_accident.state.category, to_accident.state.priority),
            (Category::Accident, Priority::P1)
        );
        let mut low = state(Status::Open);
        low.priority = Priority::P3;
        let up = transition(low, Actor::System, Action::Escalate).unwrap();
        assert_eq!(up.state.priority, Priority::P2);
        let top = transition(up.state, Actor::System, Action::Escalate).unwrap();
        let still = transition(top.state, Actor::System, Action::Escalate).unwrap();
        assert_eq!((top.state.priority, still.state.priority), (Priority::P1, Priority::P1));
    }

    #[test]
    fn reopening_clears_the_owner() {
        let reopened = transition(state(Status::Resolved), Actor::Responder(OTHER), Action::Reopen).unwrap();
        assert_eq!((reopened.state.status, reopened.state.assignee), (Status::Open, None));
    }
}
