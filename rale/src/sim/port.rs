//! Where the simulated world meets the agent that ships: each simulated node runs the
//! real [`crate::agent::Agent`] (HA loop, executor, lease keeper, fence deadline) against
//! handles that implement [`Consensus`], [`PostgresControl`] and [`Runtime`] by posting
//! requests to the node's [`Port`]. The simulator serves them on its virtual clock (a
//! status or a read at once, a proposal when consensus applies it, a PostgreSQL action
//! when its simulated duration has passed) and polls the agent's future only when one
//! of its wakers fired — deterministic, single-threaded, no async runtime.
//!
//! Requests carry their [`Origin`]: a stalled HA loop (fault `stall_loop`) gets nothing
//! served and no timer fired while its lease keeper goes on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::agent::{AgentHooks, BoxFuture, Runtime};
use crate::consensus::{Consensus, Membership, Peer};
use crate::decide::Decision;
use crate::pg::{ApplyReport, PostgresControl, StopMode, Upstream};
use crate::state::{ClusterState, Command, Outcome};
use crate::status::PgStatus;
use crate::types::{Millis, NodeId};
use crate::{Error, Result};

/// Who sent a request: the HA loop or the lease keeper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    Loop,
    Keeper,
}

/// A PostgreSQL operation the agent asked for.
#[derive(Clone, Debug)]
pub(super) enum PgOp {
    Bootstrap(BTreeMap<String, String>),
    Start(Option<NodeId>),
    Stop(StopMode),
    Restart,
    Reload,
    Promote,
    Follow(Option<NodeId>),
    Rewind(NodeId),
    Clone(NodeId),
    SetParameters(BTreeMap<String, String>),
    ResetParameters,
    EnsureSlots(Vec<String>),
}

/// A request from the agent.
#[derive(Clone, Debug)]
pub(super) enum Request {
    Status,
    Read,
    Propose(Box<Command>),
    Pg(PgOp),
    /// A failsafe confirmation request to another member's agent.
    Failsafe(NodeId, Box<crate::decide::failsafe::FailsafeRequest>),
}

/// What a finished PostgreSQL operation returns.
#[derive(Clone, Debug)]
pub(super) enum PgDone {
    Unit,
    SystemId(u64),
    Report(ApplyReport),
}

/// The simulator's answer to a request.
#[derive(Debug)]
pub(super) enum Response {
    Status(PgStatus),
    Read(Result<Arc<ClusterState>>),
    Propose(Result<Outcome>),
    Pg(std::result::Result<PgDone, String>),
    Failsafe(std::result::Result<crate::decide::failsafe::FailsafeAnswer, String>),
}

/// Sets a flag when any of the agent's futures is woken.
#[derive(Default)]
pub(super) struct WakeFlag(AtomicBool);

impl WakeFlag {
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.set();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.set();
    }
}

/// The mutable side of a port.
#[derive(Default)]
pub(super) struct PortState {
    /// The node's clock reading (monotonic ms) and the world's wall clock.
    pub clock: u64,
    pub wall: u64,
    pub majority: bool,
    /// The HA loop is stalled: its requests wait, its timers do not fire.
    pub loop_held: bool,
    next_ticket: u64,
    /// Requests not yet taken by the simulator.
    pub requests: VecDeque<(u64, Origin, Request)>,
    /// Tickets whose caller still waits.
    live: BTreeSet<u64>,
    responses: BTreeMap<u64, Response>,
    wakers: BTreeMap<u64, Waker>,
    /// Sleeping timers: ticket → (deadline on the node's clock, origin).
    timers: BTreeMap<u64, (u64, Origin)>,
    /// Decisions the HA loop took since the simulator last looked: (clock, decision,
    /// whether it saw the cluster state).
    pub decisions: Vec<(u64, Decision, bool)>,
}

/// One agent's connection to the simulated world.
#[derive(Default)]
pub(super) struct Port {
    state: Mutex<PortState>,
    /// Set when a future of the agent was woken.
    pub wake: Arc<WakeFlag>,
}

impl Port {
    pub fn lock(&self) -> MutexGuard<'_, PortState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers `ticket` (dropped when its caller gave up) and wakes the caller.
    pub fn respond(&self, ticket: u64, response: Response) {
        let mut p = self.lock();
        if !p.live.contains(&ticket) {
            return;
        }
        p.responses.insert(ticket, response);
        if let Some(w) = p.wakers.get(&ticket) {
            w.wake_by_ref();
        }
    }

    /// Wakes every timer due at the port's clock (the loop's only when not held).
    pub fn fire_timers(&self) {
        let p = self.lock();
        for (ticket, (deadline, origin)) in &p.timers {
            if *deadline <= p.clock
                && !(p.loop_held && *origin == Origin::Loop)
                && let Some(w) = p.wakers.get(ticket)
            {
                w.wake_by_ref();
            }
        }
    }

    /// Wakes everything (after a stall ends, or on the agent's start).
    pub fn wake_all(&self) {
        self.wake.set();
    }

    fn ticket(p: &mut PortState) -> u64 {
        p.next_ticket += 1;
        p.next_ticket
    }
}

/// A request in flight: posted on first poll, ready when answered.
struct Call {
    port: Arc<Port>,
    origin: Origin,
    request: Option<Request>,
    ticket: Option<u64>,
}

impl Future for Call {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let port = self.port.clone();
        let mut p = port.lock();
        let ticket = match self.ticket {
            Some(t) => t,
            None => {
                let t = Port::ticket(&mut p);
                let request = self.request.take().expect("posted once");
                p.requests.push_back((t, self.origin, request));
                p.live.insert(t);
                self.ticket = Some(t);
                t
            }
        };
        if !(p.loop_held && self.origin == Origin::Loop)
            && let Some(r) = p.responses.remove(&ticket)
        {
            p.live.remove(&ticket);
            p.wakers.remove(&ticket);
            self.ticket = None;
            return Poll::Ready(r);
        }
        p.wakers.insert(ticket, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Some(t) = self.ticket {
            let mut p = self.port.lock();
            p.live.remove(&t);
            p.responses.remove(&t);
            p.wakers.remove(&t);
            p.requests.retain(|(r, _, _)| *r != t);
        }
    }
}

/// A sleep on the node's clock.
struct Sleep {
    port: Arc<Port>,
    origin: Origin,
    duration_ms: u64,
    ticket: Option<u64>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let port = self.port.clone();
        let mut p = port.lock();
        let ticket = match self.ticket {
            Some(t) => t,
            None => {
                let t = Port::ticket(&mut p);
                let deadline = p.clock.saturating_add(self.duration_ms);
                p.timers.insert(t, (deadline, self.origin));
                self.ticket = Some(t);
                t
            }
        };
        let deadline = p.timers.get(&ticket).map(|(d, _)| *d).unwrap_or(0);
        if deadline <= p.clock && !(p.loop_held && self.origin == Origin::Loop) {
            p.timers.remove(&ticket);
            p.wakers.remove(&ticket);
            self.ticket = None;
            return Poll::Ready(());
        }
        p.wakers.insert(ticket, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(t) = self.ticket {
            let mut p = self.port.lock();
            p.timers.remove(&t);
            p.wakers.remove(&t);
        }
    }
}

/// The agent's handle on the port, as one of its seams.
#[derive(Clone)]
pub(super) struct Handle {
    pub port: Arc<Port>,
    pub origin: Origin,
}

impl Handle {
    fn call(&self, request: Request) -> Call {
        Call {
            port: self.port.clone(),
            origin: self.origin,
            request: Some(request),
            ticket: None,
        }
    }

    async fn pg(&self, op: PgOp) -> Result<PgDone> {
        match self.call(Request::Pg(op)).await {
            Response::Pg(r) => r.map_err(|e| Error::pg("simulated", e)),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(r: &Response) -> Error {
    Error::Consensus(format!("simulator answered out of turn: {r:?}"))
}

impl Runtime for Handle {
    fn now(&self) -> Millis {
        Millis(self.port.lock().clock)
    }

    fn wall_ms(&self) -> u64 {
        self.port.lock().wall
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(Sleep {
            port: self.port.clone(),
            origin: self.origin,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            ticket: None,
        })
    }
}

#[async_trait]
impl Consensus for Handle {
    async fn read(&self) -> Result<Arc<ClusterState>> {
        match self.call(Request::Read).await {
            Response::Read(r) => r,
            other => Err(unexpected(&other)),
        }
    }

    async fn propose(&self, cmd: Command) -> Result<Outcome> {
        match self.call(Request::Propose(Box::new(cmd))).await {
            Response::Propose(r) => r,
            other => Err(unexpected(&other)),
        }
    }

    fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        watch::channel(Arc::new(ClusterState::default())).1
    }

    async fn membership(&self) -> Result<Membership> {
        Ok(Membership::default())
    }

    async fn add_member(&self, _: Peer) -> Result<()> {
        Err(Error::Consensus(
            "membership changes are not simulated".into(),
        ))
    }

    async fn remove_member(&self, _: &NodeId) -> Result<()> {
        Err(Error::Consensus(
            "membership changes are not simulated".into(),
        ))
    }

    fn has_majority(&self) -> bool {
        self.port.lock().majority
    }
}

#[async_trait]
impl crate::agent::FailsafeClient for Handle {
    async fn confirm(
        &self,
        member: &crate::decide::failsafe::FailsafeMember,
        request: &crate::decide::failsafe::FailsafeRequest,
    ) -> std::result::Result<crate::decide::failsafe::FailsafeAnswer, String> {
        let call = Request::Failsafe(member.node.clone(), Box::new(request.clone()));
        match self.call(call).await {
            Response::Failsafe(r) => r,
            other => Err(unexpected(&other).to_string()),
        }
    }
}

#[async_trait]
impl PostgresControl for Handle {
    async fn status(&self) -> Result<PgStatus> {
        match self.call(Request::Status).await {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    async fn bootstrap(&self, parameters: &BTreeMap<String, String>) -> Result<u64> {
        match self.pg(PgOp::Bootstrap(parameters.clone())).await? {
            PgDone::SystemId(id) => Ok(id),
            _ => Ok(0),
        }
    }

    async fn start(&self, upstream: Option<&Upstream>) -> Result<()> {
        self.pg(PgOp::Start(upstream.map(|u| u.node.clone())))
            .await
            .map(|_| ())
    }

    async fn stop(&self, mode: StopMode) -> Result<()> {
        self.pg(PgOp::Stop(mode)).await.map(|_| ())
    }

    async fn restart(&self) -> Result<()> {
        self.pg(PgOp::Restart).await.map(|_| ())
    }

    async fn reload(&self) -> Result<()> {
        self.pg(PgOp::Reload).await.map(|_| ())
    }

    async fn promote(&self, _timeout: Duration) -> Result<()> {
        self.pg(PgOp::Promote).await.map(|_| ())
    }

    async fn follow(&self, upstream: Option<&Upstream>) -> Result<()> {
        self.pg(PgOp::Follow(upstream.map(|u| u.node.clone())))
            .await
            .map(|_| ())
    }

    async fn rewind(&self, source: &Upstream) -> Result<()> {
        self.pg(PgOp::Rewind(source.node.clone())).await.map(|_| ())
    }

    async fn clone_from(&self, source: &Upstream) -> Result<()> {
        self.pg(PgOp::Clone(source.node.clone())).await.map(|_| ())
    }

    async fn set_parameters(&self, parameters: &BTreeMap<String, String>) -> Result<ApplyReport> {
        match self.pg(PgOp::SetParameters(parameters.clone())).await? {
            PgDone::Report(r) => Ok(r),
            _ => Ok(ApplyReport::default()),
        }
    }

    async fn reset_parameters(&self, _names: &[String]) -> Result<ApplyReport> {
        match self.pg(PgOp::ResetParameters).await? {
            PgDone::Report(r) => Ok(r),
            _ => Ok(ApplyReport::default()),
        }
    }

    async fn ensure_slots(&self, plan: &crate::pg::SlotPlan) -> Result<()> {
        self.pg(PgOp::EnsureSlots(plan.members.clone()))
            .await
            .map(|_| ())
    }

    async fn preflight(&self) -> Result<String> {
        Ok("simulated PostgreSQL".into())
    }
}

/// Records the loop's decisions for the simulator's trace.
pub(super) struct Hooks(pub Arc<Port>);

impl AgentHooks for Hooks {
    fn decided(&self, now: Millis, decision: &Decision, cluster_read: bool) {
        self.0
            .lock()
            .decisions
            .push((now.0, decision.clone(), cluster_read));
    }
}
