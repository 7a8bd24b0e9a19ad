//! The dispatcher: reads the connection's events, decodes each agent message and hands it to
//! its router's task (started on the router's first message), and wakes router tasks after
//! commits that wrote downstream changes. It awaits nothing but its inputs, so a slow
//! database or a busy router never holds up the others or the MQTT event loop.

use super::Shared;
use super::router::{self, Input};
use crate::storage::Storage;
use crate::storage::sync::RawBatch;
use easyisp_mqtt::{Link, LinkEvent};
use easyisp_protocol::envelope::{
    Ack, CommandResult, EnvelopeError, ResyncRequest, Status, Telemetry, decode,
};
use easyisp_protocol::topics::{self, SiteTopic};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

type Routers = HashMap<Uuid, mpsc::UnboundedSender<Input>>;

pub(super) async fn run(
    storage: Storage,
    mut link: Link,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let signal = storage.down_signal();
    let mut routers: Routers = HashMap::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            event = link.events.recv() => match event {
                None => break,
                Some(LinkEvent::Connected) => {
                    shared.connected.store(true, Ordering::Relaxed);
                    tracing::debug!("sync engine connected to the broker");
                }
                Some(LinkEvent::Disconnected { reason }) => {
                    shared.connected.store(false, Ordering::Relaxed);
                    tracing::warn!(%reason, "sync engine lost the broker; agents' statuses will tell who is online on reconnection");
                    for sender in routers.values() {
                        let _ = sender.send(Input::BrokerLost);
                    }
                    if let Ok(mut online) = shared.online.lock() {
                        online.clear();
                    }
                }
                Some(LinkEvent::Message { topic, payload }) => {
                    dispatch(&storage, &shared, &cancel, &tracker, &mut routers, &topic, &payload);
                }
            },
            _ = signal.changed() => {
                for router in signal.take() {
                    if let Some(sender) = routers.get(&router) {
                        let _ = sender.send(Input::Wake);
                    }
                }
            }
        }
    }
    shared.connected.store(false, Ordering::Relaxed);
    link.task.abort();
    tracing::debug!("sync engine stopped");
}

fn dispatch(
    storage: &Storage,
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
    routers: &mut Routers,
    topic: &str,
    payload: &[u8],
) {
    let Some((router, kind)) = topics::parse(topic) else {
        tracing::debug!(%topic, "ignored a message on an unknown topic");
        return;
    };
    let input = match decode_input(router, kind, payload) {
        Ok(Some(Decoded::Input(input))) => input,
        Ok(Some(Decoded::CommandResult(result))) => {
            if !shared.commands.complete(router, result) {
                tracing::debug!(%router, "a command result arrived after its caller gave up");
            }
            return;
        }
        Ok(None) => return,
        Err(reason) => {
            // Never the payload itself: it may carry customer passwords.
            tracing::warn!(%router, topic = kind.suffix(), %reason, "ignored a malformed message");
            return;
        }
    };
    let sender = routers.entry(router).or_insert_with(|| {
        let (sender, inputs) = mpsc::unbounded_channel();
        tracker.spawn(router::run(
            router,
            storage.clone(),
            shared.clone(),
            inputs,
            cancel.child_token(),
        ));
        sender
    });
    if sender.send(input).is_err() {
        tracing::warn!(%router, "the router's sync task has stopped; message dropped");
    }
}

enum Decoded {
    Input(Input),
    CommandResult(CommandResult),
}

fn decode_input(router: Uuid, kind: SiteTopic, payload: &[u8]) -> Result<Option<Decoded>, String> {
    let wrong_router = |named: Uuid| {
        Err(format!(
            "the envelope names router {named}, not the topic's router"
        ))
    };
    let text = |e: EnvelopeError| e.to_string();
    let input = match kind {
        SiteTopic::Status => {
            if payload.is_empty() {
                // A cleared retained status (someone removed it by hand): nothing to learn.
                return Ok(None);
            }
            let status: Status = decode(payload).map_err(text)?;
            if status.router != router {
                return wrong_router(status.router);
            }
            Input::Status(status)
        }
        SiteTopic::Telemetry => {
            let telemetry: Telemetry = decode(payload).map_err(text)?;
            if telemetry.router != router {
                return wrong_router(telemetry.router);
            }
            Input::Telemetry(Box::new(telemetry))
        }
        SiteTopic::UpChanges => {
            let batch: RawBatch = decode(payload).map_err(text)?;
            if batch.router != router {
                return wrong_router(batch.router);
            }
            if batch.first_seq == 0 || batch.first_seq > batch.last_seq {
                return Err(format!(
                    "batch seqs {}..{} are not a range from 1 up",
                    batch.first_seq, batch.last_seq
                ));
            }
            Input::UpChanges(batch)
        }
        SiteTopic::UpAck => {
            let ack: Ack = decode(payload).map_err(text)?;
            if ack.router != router {
                return wrong_router(ack.router);
            }
            Input::UpAck(ack)
        }
        SiteTopic::UpResync => {
            let request: ResyncRequest = decode(payload).map_err(text)?;
            if request.router != router {
                return wrong_router(request.router);
            }
            Input::Resync(request)
        }
        SiteTopic::UpCmdResult => {
            let result: CommandResult = decode(payload).map_err(text)?;
            return Ok(Some(Decoded::CommandResult(result)));
        }
        // Central's own topics; it does not subscribe to them.
        SiteTopic::DownChanges
        | SiteTopic::DownAck
        | SiteTopic::DownSnapshot
        | SiteTopic::DownCmd => return Ok(None),
    };
    Ok(Some(Decoded::Input(input)))
}
