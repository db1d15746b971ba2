//! The `turnstile` binary: flags, config, logging, signals. The logic is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use turnstile::config::Config;
use zeroize::Zeroizing;

/// An authenticating proxy for Redis: applications AUTH against password sets that
/// rotate live; everything else is forwarded to the real Redis unchanged.
#[derive(Debug, Parser)]
#[command(version, about, long_about = LONG_ABOUT, after_long_help = AFTER_HELP)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The TOML configuration file (see examples/turnstile.toml for every key).
    #[arg(long, short, value_name = "FILE", env = "TURNSTILE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `turnstile=debug`.
    #[arg(long, env = "TURNSTILE_LOG", default_value = "info", global = true)]
    log: String,
    /// Emit logs as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy and the admin API (what `turnstile --config FILE` does).
    Run,
    /// Validate the configuration file and print the effective configuration
    /// (every default filled in, secrets never printed), then exit.
    ///
    /// Validation is the one the server does before binding anything, environment
    /// variables included: exit 0 if the server would accept the file, 64 with the
    /// message naming the key if not. Nothing is bound and the store is not opened.
    CheckConfig,
    /// List, add or delete passwords of a database's default user or of a user,
    /// through a running turnstile's admin API (no config file needed).
    ///
    /// Credentials: --user (or TURNSTILE_ADMIN_USER) and the password in
    /// TURNSTILE_ADMIN_PASSWORD, never on the command line. `add` generates a strong
    /// password and prints it once; `delete --id` with --unless-used-within refuses
    /// while the password is still in use. Exit 0 on success, 1 if refused.
    Passwords(PasswordsArgs),
    /// Operations on the store.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Copies a file store (`state.json` in DIR, default `[store] dir`) into the
    /// Redis store `[store] redis` names, once: refused unless that store is empty.
    /// Run it before the first node starts on the Redis store.
    Import {
        /// The file store's directory.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct PasswordsArgs {
    /// The admin API, e.g. https://127.0.0.1:9443.
    #[arg(long, env = "TURNSTILE_ADMIN_URL", default_value = "https://127.0.0.1:9443")]
    url: String,
    /// The admin API user.
    #[arg(long, env = "TURNSTILE_ADMIN_USER", default_value = "admin")]
    user: String,
    /// PEM file of the CA (or self-signed certificate) of the admin API; its
    /// generated certificate is <store dir>/tls/cert.pem.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Whose passwords: a database's default user or a user.
    owner: turnstile::cli::passwords::Owner,
    /// The database's or user's uid.
    uid: u32,
    #[command(subcommand)]
    action: turnstile::cli::passwords::Action,
}

const LONG_ABOUT: &str = "\
An authenticating proxy for the Redis protocol (RESP2 and RESP3).

Applications connect with any Redis client. turnstile answers AUTH and HELLO ... AUTH
itself against sets of passwords (one set per database's default user, one per named
user) and forwards everything else, byte for byte, to the real Redis. An admin REST API
(Redis Enterprise's password endpoints) adds and removes passwords live: rotation
without a restart and without dropping a connected client.

Secrets never come from the command line: upstream and seed passwords are read from
the environment variables the config file names.";

const AFTER_HELP: &str = "\
Environment:
  TURNSTILE_CONFIG          the config file, if --config is not given
  TURNSTILE_LOG             the log filter, if --log is not given
  TURNSTILE_ADMIN_PASSWORD  the bootstrap admin's password (needed while the store is empty)
  and the variables the config file names (upstream_password_env, default_password_env)

Exit status:
  0   clean shutdown (SIGTERM or SIGINT), or check-config found the file valid
  1   start-up failed after the configuration was accepted (a port taken, the store unreadable)
  2   bad command line
  64  invalid configuration file (the message names the key), or an upstream whose
      service credential may not manage turnstile's ACL users (the message names the
      database and the least ACL it needs)

Examples:
  turnstile --config /etc/turnstile/turnstile.toml
  turnstile check-config --config /etc/turnstile/turnstile.toml
  TURNSTILE_LOG=turnstile=debug turnstile --config turnstile.toml --log-json";

/// mimalloc instead of glibc's malloc: with glibc, the mix of short-lived buffers and
/// long-lived per-connection state fragments the heap, and an idle authenticated
/// connection cost ~8.3 KiB of RSS; with mimalloc the same measurement gives the
/// figure in the README's performance table.
#[global_allocator]
#[cfg(not(feature = "sysalloc"))]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits' EX_CONFIG-ish "usage/config error", as linkerd and pelikan use.
const EXIT_CONFIG: u8 = 64;

/// Transparent huge pages off for this process, as Redis does by default
/// (`disable-thp yes`). Why: a proxy's memory is many small allocations per
/// connection; where the kernel backs the allocator's memory with 2 MiB pages, a
/// few connections more commit 2 MiB of RSS at once (measured: a batch of 1,000
/// idle connections grew RSS by 2.0 or 4.1 KiB each, as pages happened to fall),
/// and compaction for them stalls the event loop. Set before any thread starts
/// (the flag is per process and inherited). Failure only costs memory.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "could not turn transparent huge pages off");
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Passwords(p)) = args.command {
        return passwords(p);
    }
    let Some(config_path) = args.config.clone() else {
        Args::command()
            .error(clap::error::ErrorKind::MissingRequiredArgument, "--config <FILE> is required")
            .exit();
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }

    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("turnstile: invalid configuration {}: {e}", config_path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(Command::CheckConfig) = args.command {
        return check_config(&config_path, &config);
    }
    if let Some(Command::Store(StoreCommand::Import { from })) = args.command {
        let from = from.unwrap_or_else(|| config.config.store.dir.clone());
        return match turnstile::server::import_store(&config, &from) {
            Ok(summary) => {
                announce(&format!("turnstile: {summary}"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("turnstile: store import: {e}");
                ExitCode::FAILURE
            }
        };
    }
    disable_transparent_huge_pages();
    // One worker (the default on two cores, see `ProxyConfig::worker_threads`) runs
    // on tokio's current-thread scheduler: the multi-thread one with a single worker
    // still pays for work stealing (its queues' atomics, waking a parked worker
    // through the driver) on every task wake-up, for a second thread that does not
    // exist. argon2 keeps its own threads either way.
    let runtime = match config.config.proxy.worker_threads() {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("turnstile: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Only needed on first start (empty store), to create the `[bootstrap]` admin.
    let admin_password = std::env::var(turnstile::effective::ADMIN_PASSWORD_ENV).ok().map(Zeroizing::new);
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        // Registered before anything is announced, so a SIGTERM sent the moment the
        // "listening" lines appear is handled gracefully, not fatally.
        let signals = match Signals::register() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("turnstile: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let running = match turnstile::server::start(&config, admin_password, shutdown.clone()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("turnstile: {e}");
                return if e.is_configuration() { ExitCode::from(EXIT_CONFIG) } else { ExitCode::FAILURE };
            }
        };
        for (uid, addr) in running.bdb_addrs() {
            // Stable lines that scripts (and the tests) can wait for.
            announce(&format!("turnstile: bdb {uid} listening on {addr}"));
        }
        let scheme = if running.admin_tls() { "https" } else { "http" };
        announce(&format!("turnstile: admin API listening on {scheme}://{}", running.admin_addr));
        tokio::spawn(signals.wait(shutdown));
        running.run().await;
        ExitCode::SUCCESS
    })
}

/// `turnstile check-config`: the file was valid; print what turnstile will use.
fn check_config(path: &std::path::Path, config: &turnstile::config::Validated) -> ExitCode {
    let is_set = |var: &str| std::env::var_os(var).is_some();
    match turnstile::effective::render(config, &is_set) {
        Ok(text) => {
            announce(&format!("# turnstile: {} is valid.\n{text}", path.display()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("turnstile: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `turnstile passwords …`: one call sequence against the admin API.
fn passwords(p: PasswordsArgs) -> ExitCode {
    let Some(secret) = std::env::var(turnstile::effective::ADMIN_PASSWORD_ENV).ok().map(Zeroizing::new)
    else {
        eprintln!("turnstile: set TURNSTILE_ADMIN_PASSWORD to the admin API password of --user");
        return ExitCode::from(2);
    };
    let client = match turnstile::cli::http::Client::new(&p.url, &p.user, &secret, p.cacert.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("turnstile: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("turnstile: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = Zeroizing::new(String::new());
    let result =
        runtime.block_on(turnstile::cli::passwords::run(&client, p.owner, p.uid, p.action, &mut out));
    if !out.is_empty() {
        announce(out.trim_end());
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("turnstile: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a line to stdout. Unlike `println!`, a closed stdout (the reader went
/// away) is not a reason for a proxy to die.
fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// SIGINT and SIGTERM, registered up front.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Cancels `shutdown` on the first signal.
    async fn wait(mut self, shutdown: CancellationToken) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("signal received");
        shutdown.cancel();
    }
}
