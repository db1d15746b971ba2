//! Password sets and their verification: argon2id hashes, a verification cache, and
//! the directory of databases and users that the data path authenticates against.

pub mod cache;
pub mod directory;
pub mod failures;
pub mod fair;
pub mod hasher;
pub mod login;
pub mod set;
pub mod throttle;
pub mod usage;

pub use cache::SetId;
pub use directory::{
    BdbAccess, ChangeError, DEFAULT_USER, Directory, Identity, Permission, SetChange, VerifyOptions,
    default_user_name,
};
pub use hasher::{Digest, HashParams};
pub use login::Attempt;
pub use set::PasswordSet;
pub use throttle::{Throttle, ThrottlePolicy};
pub use usage::{InUse, Usage};
