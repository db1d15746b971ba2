//! File descriptors: the process's limit raised at start, and a few spare ones held
//! in reserve so that a listener out of descriptors can still shed connections.

use std::fs::File;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Spare descriptors kept open on `/dev/null`. One is enough to accept a connection
/// and close it; a few let several listeners shed at once.
const RESERVE: usize = 4;

/// At most this many queued connections are shed per spare descriptor released,
/// so one listener's backlog cannot keep its accept loop busy for long.
const SHED_BATCH: usize = 64;

/// How long an accept loop waits after running out of descriptors: enough for
/// closing connections to give some back, short enough that the port answers again
/// as soon as they do. Never zero: retrying `accept` at once would spin a core.
pub const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(5);

static SPARE: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// Raises the soft limit on open descriptors to the hard limit (Debian's default
/// soft limit is 1,024, far below what a proxy holds) and opens the reserve.
/// Returns the limit now in force.
pub fn prepare() -> u64 {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    refill();
    limit
}

/// What a bound that clients without credentials can fill may be under an open file
/// limit of `fd_limit`: at most `1/share` of it (0 = that cap).
pub fn cap(wanted: usize, fd_limit: u64, share: usize) -> usize {
    let room = (usize::try_from(fd_limit).unwrap_or(usize::MAX) / share).max(1);
    if wanted == 0 { room } else { wanted.min(room) }
}

/// The open file limit a start would run with: the hard limit (see [`prepare`]).
pub fn hard_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(_, hard)| hard)
}

/// Reopens spare descriptors up to [`RESERVE`] (some may have been spent).
fn refill() {
    let mut spare = SPARE.lock().unwrap_or_else(|p| p.into_inner());
    while spare.len() < RESERVE {
        match File::open("/dev/null") {
            Ok(f) => spare.push(f),
            Err(_) => break,
        }
    }
}

/// Whether an `accept` error means the process or the system is out of descriptors.
pub fn exhausted(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// After `accept` failed with [`exhausted`]: frees one spare descriptor, accepts
/// the connections already queued on `listener` (up to [`SHED_BATCH`]), hands each
/// to `refuse` (which writes a refusal without waiting, or nothing) and closes it,
/// then takes the descriptor back. Without this, queued clients would wait in the
/// backlog until they time out, unable to tell a full server from a dead one.
/// Returns how many were shed. The caller still backs off ([`EXHAUSTED_BACKOFF`]).
pub async fn shed(listener: &TcpListener, refuse: impl Fn(&TcpStream)) -> usize {
    let spare = SPARE.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let Some(spare) = spare else { return 0 };
    drop(spare);
    let mut shed = 0;
    while shed < SHED_BATCH {
        // Polled once: only connections already queued, never waiting for more.
        let polled = std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await;
        match polled {
            Poll::Ready(Ok((stream, _))) => {
                refuse(&stream);
                shed += 1;
            }
            Poll::Ready(Err(_)) | Poll::Pending => break,
        }
    }
    refill();
    shed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_the_limit() {
        assert_eq!(cap(1024, 1_048_576, 4), 1024);
        assert_eq!(cap(1024, 1024, 4), 256);
        assert_eq!(cap(0, 20_000, 2), 10_000, "0 = the cap");
        assert_eq!(cap(10, 0, 2), 1, "never 0");
    }

    #[test]
    fn exhaustion_is_recognised() {
        assert!(exhausted(&std::io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(exhausted(&std::io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!exhausted(&std::io::Error::from_raw_os_error(libc::ECONNABORTED)));
    }

    #[tokio::test]
    async fn shedding_accepts_what_is_queued_and_closes_it() {
        refill();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        // The kernel completes the handshakes before accept; wait until all are queued.
        let mut n = 0;
        for _ in 0..100 {
            n += shed(&l, |s| {
                let _ = s.try_write(b"-ERR max number of clients reached\r\n");
            })
            .await;
            if n == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(n, 3);
        use tokio::io::AsyncReadExt;
        for mut c in clients {
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"-ERR max number of clients reached\r\n");
        }
        assert_eq!(SPARE.lock().unwrap().len(), RESERVE, "the spare descriptor is taken back");
    }
}
