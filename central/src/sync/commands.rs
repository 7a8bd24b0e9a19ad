//! Commands to a router's agent (`down/cmd`) and their results (`up/cmd-result`), matched by
//! the command's id. A result that arrives after its caller gave up is dropped.

use super::Shared;
use chrono::Utc;
use easyisp_protocol::envelope::{
    Command, CommandKind, CommandOutcome, CommandResult, PROTOCOL_VERSION, encode,
};
use easyisp_protocol::topics::SiteTopic;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::oneshot;
use uuid::Uuid;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    #[error("the router's agent is offline")]
    AgentOffline,
    #[error("the router's agent did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the command could not be sent to the broker")]
    NotSent,
}

/// Callers waiting for a result, by command id, with the router the command went to.
#[derive(Default)]
pub struct Pending(Mutex<HashMap<Uuid, (Uuid, oneshot::Sender<CommandOutcome>)>>);

impl Pending {
    fn insert(&self, id: Uuid, router: Uuid) -> oneshot::Receiver<CommandOutcome> {
        let (to, from) = oneshot::channel();
        if let Ok(mut map) = self.0.lock() {
            map.insert(id, (router, to));
        }
        from
    }

    fn remove(&self, id: Uuid) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&id);
        }
    }

    /// Hands a result from `router`'s agent to its waiting caller; false when nobody waits
    /// for it (any more), or the command went to another router.
    pub fn complete(&self, router: Uuid, result: CommandResult) -> bool {
        let waiter = self
            .0
            .lock()
            .ok()
            .and_then(|mut map| match map.get(&result.id) {
                Some((to, _)) if *to == router => map.remove(&result.id),
                _ => None,
            });
        waiter.is_some_and(|(_, to)| to.send(result.outcome).is_ok())
    }
}

/// Removes the pending entry however the wait ends (result, timeout, cancelled request).
struct Forget<'a> {
    pending: &'a Pending,
    id: Uuid,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.pending.remove(self.id);
    }
}

pub(super) async fn send(
    shared: &Shared,
    router: Uuid,
    command: CommandKind,
    wait: Duration,
) -> Result<CommandOutcome, CommandError> {
    if !shared.is_online(router) {
        return Err(CommandError::AgentOffline);
    }
    let id = Uuid::now_v7();
    let expires_at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
    let envelope = Command {
        v: PROTOCOL_VERSION,
        id,
        expires_at,
        command,
    };
    let result = shared.commands.insert(id, router);
    let _forget = Forget {
        pending: &shared.commands,
        id,
    };
    let deadline = tokio::time::Instant::now() + wait;
    let sent = tokio::time::timeout_at(
        deadline,
        shared.publish(router, SiteTopic::DownCmd, encode(&envelope)),
    )
    .await;
    if !matches!(sent, Ok(true)) {
        return Err(CommandError::NotSent);
    }
    match tokio::time::timeout_at(deadline, result).await {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(_)) | Err(_) => Err(CommandError::Timeout(wait)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: Uuid) -> CommandResult {
        CommandResult {
            v: PROTOCOL_VERSION,
            id,
            outcome: CommandOutcome::Done,
        }
    }

    #[tokio::test]
    async fn a_result_reaches_its_caller_only_from_the_router_the_command_went_to() {
        let pending = Pending::default();
        let (id, router) = (Uuid::now_v7(), Uuid::now_v7());
        let waiting = pending.insert(id, router);
        assert!(
            !pending.complete(Uuid::now_v7(), result(id)),
            "another router"
        );
        assert!(
            !pending.complete(router, result(Uuid::now_v7())),
            "unknown id"
        );
        assert!(pending.complete(router, result(id)));
        assert_eq!(waiting.await.unwrap(), CommandOutcome::Done);
        assert!(!pending.complete(router, result(id)), "answered once");
    }
}
