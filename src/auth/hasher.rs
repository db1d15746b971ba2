//! argon2id evaluation: off the async workers, at a lower CPU priority, with bounded
//! concurrency shared fairly across source addresses, counted.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::fair::{FairSlots, Slot};

/// The output of one argon2id evaluation.
pub type Digest = [u8; 32];
/// Per-set salt length (the argon2 recommendation).
pub const SALT_LEN: usize = 16;

/// argon2id cost parameters. Defaults are OWASP's: 19 MiB, 2 passes, 1 lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self { m_cost: 19_456, t_cost: 2, p_cost: 1 }
    }
}

impl HashParams {
    /// Checks the parameters are ones argon2 accepts; the message names the problem.
    pub fn validate(&self) -> Result<(), String> {
        self.argon2_params().map(|_| ()).map_err(|e| format!("invalid argon2 parameters: {e}"))
    }

    fn argon2_params(&self) -> Result<Params, argon2::Error> {
        Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
    }
}

/// Why a hash could not be computed. Parameters are validated at load time, so in
/// practice this means the blocking pool is gone (the runtime is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("password hashing unavailable: {0}")]
pub struct HashError(String);

/// A digest from [`Hasher::derive_unless`].
#[derive(Debug)]
pub enum Derived {
    /// Evaluated now, with the evaluation's turn: drop it once the result is where
    /// the next attempt's `known` looks.
    Computed(Digest, Turn),
    /// Found while waiting for a turn.
    Known(Digest),
    /// Refused when its turn came (its address got throttled while it waited):
    /// nothing was evaluated.
    Refused,
}

/// What an attempt does when its turn comes, as its caller decides then.
#[derive(Debug)]
pub enum AtTurn {
    /// Evaluate.
    Evaluate,
    /// Use this digest, found since the attempt was queued.
    Known(Digest),
    /// Give the turn back unused.
    Refuse,
}

/// One of the `concurrency` evaluation slots; the next attempt waits for it.
#[derive(Debug)]
pub struct Turn(#[allow(dead_code)] Slot);

/// The nice value argon2 threads run at. Under CFS a nice-10 thread gets about a
/// tenth of a core that a nice-0 thread also wants: a storm of wrong passwords (up
/// to the throttle's limit per address, each ~40 ms of a core) then takes CPU only
/// when the data path leaves it, and a legitimate first AUTH still finishes in well
/// under a second on a saturated machine (its result is cached afterwards).
pub const ARGON2_NICE: i32 = 10;

/// Runs argon2id on a thread of its own, at most `concurrency` at a time.
///
/// Why bounded: each evaluation takes ~20 ms of a core and 19 MiB of memory. A storm
/// of `AUTH` attempts would otherwise occupy every core and starve the connections
/// that are already authenticated and only moving bytes. Why a thread per
/// evaluation at [`ARGON2_NICE`], not tokio's blocking pool: a thread's nice value
/// cannot be raised back without privileges, and the blocking pool also runs the
/// store's I/O, which must not slow down; starting a thread costs ~30 µs next to the
/// evaluation's ~40 ms, and its 19 MiB go back when it exits.
///
/// Turns are handed out round-robin across source addresses ([`FairSlots`]): a
/// burst from one address waits behind itself, not in front of everyone.
#[derive(Debug)]
pub struct Hasher {
    slots: FairSlots,
    evaluations: AtomicU64,
}

impl Hasher {
    pub fn new(concurrency: usize) -> Self {
        Self { slots: FairSlots::new(concurrency), evaluations: AtomicU64::new(0) }
    }

    /// Number of argon2 evaluations so far (for tests and metrics).
    pub fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Relaxed)
    }

    /// Attempts waiting for a turn now (for tests and metrics).
    pub fn waiting(&self) -> usize {
        self.slots.waiting()
    }

    /// Derives the digest of `password` under `params` and `salt`.
    pub async fn derive(
        &self,
        params: HashParams,
        salt: [u8; SALT_LEN],
        password: Zeroizing<Vec<u8>>,
    ) -> Result<Digest, HashError> {
        match self.derive_unless(None, params, salt, password, || AtTurn::Evaluate).await? {
            Derived::Computed(d, _) | Derived::Known(d) => Ok(d),
            // Not reached (`at_turn` says evaluate); an error rather than a panic.
            Derived::Refused => Err(HashError("refused".into())),
        }
    }

    /// Like [`derive`](Self::derive), queued as an attempt from `from` (None: no
    /// address, e.g. the admin API), and once its turn comes, asks `at_turn` first.
    /// Why at the turn: attempts of one password queued behind one another (200
    /// connections retrying one wrong password) then cost one evaluation, the first;
    /// the rest find its result. And a burst from one address that got throttled
    /// while it waited stops costing evaluations at once, not after the whole queue.
    pub async fn derive_unless(
        &self,
        from: Option<IpAddr>,
        params: HashParams,
        salt: [u8; SALT_LEN],
        password: Zeroizing<Vec<u8>>,
        at_turn: impl FnOnce() -> AtTurn,
    ) -> Result<Derived, HashError> {
        let slot = self.slots.acquire(from).await;
        match at_turn() {
            AtTurn::Evaluate => {}
            // The slot goes back now, to the next address's attempt.
            AtTurn::Known(d) => return Ok(Derived::Known(d)),
            AtTurn::Refuse => return Ok(Derived::Refused),
        }
        self.evaluations.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The turn travels back with the result: the caller remembers the result
        // before letting the next attempt in, which then finds it. If the caller is
        // gone, the failed send drops the turn here, when the evaluation is over.
        let job = move || {
            let _ = tx.send((derive_now(params, &salt, &password), Turn(slot)));
        };
        let spawned = std::thread::Builder::new().name("turnstile-argon2".into()).spawn(move || {
            lower_priority();
            #[cfg(test)]
            tests::OBSERVED_NICE.store(current_nice(), Ordering::Relaxed);
            job()
        });
        if let Err(e) = spawned {
            // No thread could be made (a limit on threads): the job was dropped with
            // the error, so this evaluation fails like any unavailable hash; the
            // client gets an error reply and may retry.
            tracing::warn!(error = %e, "could not start an argon2 thread");
            return Err(HashError(e.to_string()));
        }
        let (result, turn) = rx.await.map_err(|e| HashError(e.to_string()))?;
        result.map(|d| Derived::Computed(d, turn))
    }
}

/// Lowers the calling thread's CPU priority to [`ARGON2_NICE`] (Linux keeps a nice
/// value per thread). Failure leaves it as it was: slower for the data path under a
/// storm, never wrong.
fn lower_priority() {
    if let Err(e) = rustix::process::setpriority_process(None, ARGON2_NICE) {
        tracing::debug!(error = %e, "could not lower the argon2 thread's priority");
    }
}

/// The calling thread's nice value (for tests).
#[cfg(test)]
fn current_nice() -> i32 {
    rustix::process::getpriority_process(None).expect("getpriority")
}

/// One synchronous argon2id evaluation.
pub fn derive_now(params: HashParams, salt: &[u8], password: &[u8]) -> Result<Digest, HashError> {
    let p = params.argon2_params().map_err(|e| HashError(e.to_string()))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(password, salt, &mut out)
        .map_err(|e| HashError(e.to_string()))?;
    Ok(out)
}

/// A fresh random salt.
pub fn random_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).expect("the OS random number generator is unavailable");
    salt
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI32;

    /// The nice value the last evaluation's thread ran at.
    pub(super) static OBSERVED_NICE: AtomicI32 = AtomicI32::new(i32::MIN);

    #[tokio::test]
    async fn evaluations_run_at_a_lower_priority_and_give_the_same_digest() {
        let params = HashParams { m_cost: 64, t_cost: 1, p_cost: 1 };
        let salt = [7u8; SALT_LEN];
        let h = Hasher::new(1);
        let got = h.derive(params, salt, Zeroizing::new(b"pw".to_vec())).await.unwrap();
        assert_eq!(got, derive_now(params, &salt, b"pw").unwrap());
        assert_eq!(h.evaluations(), 1);
        // At least ARGON2_NICE (a process already started nicer stays so), and
        // the runtime's own thread is untouched.
        let nice = OBSERVED_NICE.load(Ordering::Relaxed);
        assert!(nice >= ARGON2_NICE.min(19), "argon2 ran at nice {nice}");
        assert!(current_nice() < nice, "the caller's priority was lowered too");
    }
}
