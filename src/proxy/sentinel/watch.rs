//! The task that follows a Sentinel-managed database's primary: resolves it when
//! nudged (a `+switch-master`, a data-path connection error or `-READONLY`, a
//! node found to be a replica) and by a poll, verifies a new node with `ROLE`
//! before installing it, and retires the current one once it is known not to be
//! the primary. Sentinels unreachable change nothing: the known primary stays.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::super::{BdbContext, Upstream};
use super::ask::{self, Answer, Role};
use super::{Spec, subscribe};

/// How soon to ask again while no primary is known (a failover under way).
const RETRY: Duration = Duration::from_millis(100);
/// The poll is a safety net: never rarer than this, whatever is configured.
const POLL_MAX: Duration = Duration::from_secs(1);

/// Starts following the primary of `template` (a Sentinel-managed upstream) for
/// the database `ctx`, until `stop` or the database is gone.
pub fn spawn(ctx: Weak<BdbContext>, template: Arc<Upstream>, stop: CancellationToken) {
    let Some(spec) = template.sentinel.clone() else { return };
    let Some(failover) = ctx.upgrade().map(|c| Arc::clone(&c.failover)) else { return };
    for i in 0..spec.sentinels.len() {
        tokio::spawn(subscribe::run(
            Arc::clone(&spec),
            Arc::clone(&template),
            i,
            Arc::clone(&failover),
            stop.clone(),
        ));
    }
    tokio::spawn(run(ctx, template, spec, stop));
}

async fn run(ctx: Weak<BdbContext>, template: Arc<Upstream>, spec: Spec, stop: CancellationToken) {
    let mut order: Vec<usize> = (0..spec.sentinels.len()).collect();
    let mut warned = vec![false; spec.sentinels.len()];
    let poll = template.pool.failover.poll.min(POLL_MAX);
    let mut nudged = true;
    loop {
        let Some(c) = ctx.upgrade() else { return };
        let failover = Arc::clone(&c.failover);
        let step = step(&c, &template, &spec, &mut order, &mut warned, nudged);
        tokio::select! {
            _ = stop.cancelled() => return,
            () = step => {}
        }
        let pause = if c.upstream().is_current() { poll } else { RETRY };
        drop(c);
        nudged = tokio::select! {
            _ = stop.cancelled() => return,
            () = failover.nudged() => true,
            () = tokio::time::sleep(pause) => false,
        };
    }
}

/// One look: what the Sentinels say, checked against the nodes themselves.
async fn step(
    ctx: &Arc<BdbContext>,
    template: &Upstream,
    spec: &Spec,
    order: &mut [usize],
    warned: &mut [bool],
    nudged: bool,
) {
    let current = ctx.upstream_full();
    let live = current.is_current();
    match ask::primary(spec, template, order, warned).await {
        Answer::Primary(addr) if live && addr == current.address => {
            // The data path saw an error: make sure the node still is the primary
            // (a demoted node can linger in Sentinel's answer for a moment).
            if nudged && ask::role(&current).await != Role::Master {
                ctx.failover.retire(&current);
            }
        }
        Answer::Primary(addr) => {
            let node = template.at(&addr);
            if ask::role(&node).await == Role::Master {
                install(ctx, node);
            } else if live && ask::role(&current).await != Role::Master {
                // Sentinel names a node that is not promoted yet, and the old one
                // has stepped down: nobody takes writes right now.
                ctx.failover.retire(&current);
            }
        }
        Answer::Unknown | Answer::Unreachable => {
            // Nothing better is known: traffic goes on to the known primary unless
            // it says it is not one any more.
            if live && nudged && ask::role(&current).await == Role::Other {
                ctx.failover.retire(&current);
            }
        }
    }
}

/// Installs a verified primary and makes turnstile's users on it (ACL users are
/// not replicated: a promoted replica has none of them).
fn install(ctx: &Arc<BdbContext>, node: Upstream) {
    ctx.install_primary(node);
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        let node = ctx.upstream_full();
        let grants = ctx.directory.grants_of(ctx.uid);
        // A failure shows at /ready; a client's first need makes its user anyway.
        let _ = ctx.users.reconcile(&node, &grants).await;
    });
}
