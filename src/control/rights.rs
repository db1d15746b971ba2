//! Keeps turnstile's upstream users in step with the state: after every change
//! that can change a client's rights (before the change's 200), at start, and
//! periodically (an upstream restarted without an ACL file gets them back), and
//! closes the connections whose rights went away.

use std::time::Duration;

use super::Control;
use super::error::{Error, Result};
use crate::proxy::UpstreamError;
use crate::proxy::users::ManageError;

/// How often every database's upstream users are checked (`ACL LIST`, one round
/// trip) and mended.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

impl Control {
    /// Makes every running database's upstream hold exactly the users its rules
    /// need, then closes the connections whose identity lost its access, or whose
    /// own upstream connection is logged in under a rule the identity no longer has.
    /// Failures are logged (and shown at `/ready`); the next pass tries again.
    pub(super) async fn sync_rights(&self) {
        let d = &self.inner.directory;
        for (uid, ctx) in self.inner.endpoints.all() {
            let _ = ctx.users.reconcile(&ctx.upstream_full(), &d.grants_of(uid)).await;
            let closed = ctx.sessions.close_revoked(|id, own| match d.grant(uid, id) {
                None => true,
                Some(g) => own.is_some_and(|k| k != g.key),
            });
            if closed > 0 {
                tracing::info!(bdb = uid, closed, "closed connections whose rights changed");
            }
        }
    }

    /// Checks that every reachable upstream of a database that would use `rule`
    /// accepts it, before anything is stored: a refused rule is a 400 with Redis's
    /// reason, and nothing changes. An unreachable upstream gets the rule when it is
    /// back (a client's login makes its user with the rule first).
    pub(super) async fn check_rule_upstream(&self, rule: &str, uses: impl Fn(u32) -> bool) -> Result<()> {
        for (uid, ctx) in self.inner.endpoints.all() {
            if !uses(uid) {
                continue;
            }
            match ctx.users.check_rule(&ctx.upstream_full(), rule).await {
                Ok(()) | Err(ManageError::Upstream(UpstreamError::Unavailable | UpstreamError::Lost)) => {}
                Err(ManageError::RuleRefused(why)) => {
                    return Err(Error::bad_request(
                        "invalid_redis_acl",
                        format!("the upstream Redis of database {uid} refused the rule: {why}"),
                    ));
                }
                Err(ManageError::Upstream(e)) => {
                    return Err(Error::new(
                        super::Kind::Unavailable,
                        "upstream_error",
                        format!("database {uid}: {e}; nothing was changed"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks and mends every database's upstream users every
    /// [`RECONCILE_EVERY`], until shutdown.
    pub(super) fn spawn_reconciler(&self) {
        let control = self.clone();
        let shutdown = self.inner.endpoints.shutdown().clone();
        self.inner.endpoints.tracker().spawn(async move {
            let mut every = tokio::time::interval(RECONCILE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => control.sync_rights().await,
                }
            }
        });
    }
}
