//! The embedded store: one JSON document, replaced atomically on every change.
//!
//! A commit writes `state.json.tmp`, fsyncs it, renames it over `state.json` and
//! fsyncs the directory. rename(2) is atomic, so a crash at any moment leaves either
//! the old document or the new one, never a mix; once `commit` returns, the new one
//! survives a `kill -9` or a power cut.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use std::sync::Mutex;

use super::{Committed, Loaded, Revision, State, Store, StoreError};
use crate::store::state::SCHEMA_VERSION;

const FILE: &str = "state.json";
#[cfg(test)]
const TMP: &str = "state.json.tmp";

#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    /// What this process last read or wrote: one process owns the directory, so the
    /// compare-and-set is against its own history (numbered from 1 at each start).
    revision: Mutex<Revision>,
}

impl FileStore {
    /// Uses (and creates, mode 0700) `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io("create the store directory", e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        }
        Ok(Self { dir: dir.to_path_buf(), revision: Mutex::new(Revision::EMPTY) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl FileStore {
    /// The state document alone (also what `turnstile store import` reads).
    pub fn read_state(&self) -> Result<Option<State>, StoreError> {
        let bytes = match fs::read(self.dir.join(FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("read the store", e)),
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if state.version != SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!("unknown schema version {}", state.version)));
        }
        Ok(Some(state))
    }
}

impl Store for FileStore {
    fn load(&self) -> Result<Option<Loaded>, StoreError> {
        let Some(state) = self.read_state()? else { return Ok(None) };
        let (_, hash) = super::encode(&state)?;
        let revision = Revision { number: 1, hash };
        *self.revision.lock().unwrap_or_else(|p| p.into_inner()) = revision;
        Ok(Some(Loaded { state, revision }))
    }

    fn commit(&self, base: &Revision, state: &State) -> Result<Committed, StoreError> {
        let mut current = self.revision.lock().unwrap_or_else(|p| p.into_inner());
        if *current != *base {
            return Err(StoreError::Conflict(current.number));
        }
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        write_atomic(&self.dir, FILE, &bytes)?;
        let (_, hash) = super::encode(state)?;
        *current = Revision { number: current.number + 1, hash };
        Ok(Committed { revision: *current, unreplicated: false })
    }
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old or the new file,
/// never a mix (write a temporary, fsync, rename, fsync the directory).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = open_private(&tmp).map_err(|e| StoreError::io("write the store", e))?;
    f.write_all(bytes).map_err(|e| StoreError::io("write the store", e))?;
    f.sync_all().map_err(|e| StoreError::io("sync the store", e))?;
    drop(f);
    fs::rename(&tmp, dir.join(name)).map_err(|e| StoreError::io("replace the store", e))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io("sync the store directory", e))?;
    Ok(())
}

/// Creates (truncating) a file only its owner can read.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        assert_eq!(s.load().unwrap(), None);
        let mut st = State::default();
        st.cluster.name = "c1".into();
        let c = s.commit(&Revision::EMPTY, &st).unwrap();
        assert_eq!(c.revision.number, 1);
        assert!(
            matches!(s.commit(&Revision::EMPTY, &st), Err(StoreError::Conflict(1))),
            "a stale base is refused"
        );
        assert_eq!(s.load().unwrap().map(|l| l.state), Some(st));
        assert!(!dir.path().join(TMP).exists());
    }

    #[test]
    fn a_torn_temporary_file_does_not_matter_and_corruption_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        s.commit(&Revision::EMPTY, &State::default()).unwrap();
        // A crash mid-write leaves a partial tmp file: the committed state is intact.
        fs::write(dir.path().join(TMP), b"{\"version\":").unwrap();
        assert_eq!(s.load().unwrap().map(|l| l.state), Some(State::default()));
        fs::write(dir.path().join(FILE), b"{ not json").unwrap();
        assert!(matches!(s.load(), Err(StoreError::Corrupt(_))));
    }
}
