//! argon2id evaluation: off the async workers, with bounded concurrency, counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

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

/// Runs argon2id on tokio's blocking pool, at most `concurrency` at a time.
///
/// Why bounded: each evaluation takes ~20 ms of a core and 19 MiB of memory. A storm
/// of `AUTH` attempts would otherwise occupy every core and starve the connections
/// that are already authenticated and only moving bytes.
#[derive(Debug)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    evaluations: AtomicU64,
}

impl Hasher {
    pub fn new(concurrency: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(concurrency.max(1))), evaluations: AtomicU64::new(0) }
    }

    /// Number of argon2 evaluations so far (for tests and metrics).
    pub fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Relaxed)
    }

    /// Derives the digest of `password` under `params` and `salt`.
    pub async fn derive(
        &self,
        params: HashParams,
        salt: [u8; SALT_LEN],
        password: Zeroizing<Vec<u8>>,
    ) -> Result<Digest, HashError> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(|e| HashError(e.to_string()))?;
        self.evaluations.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            derive_now(params, &salt, &password)
        })
        .await
        .map_err(|e| HashError(e.to_string()))?
    }
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
