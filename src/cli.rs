//! The command line: `serve`, `superuser upsert|create|update|delete|otp`, `jobs list|retry|cancel`, `send-test-email`,
//! `check`, `export-openapi`, `version`.
//!
//! Commands that change data work whether or not `serve` is running: when the data file
//! is held by a running server, they go through its admin socket (`<dir>/backbone.sock`,
//! mode 0600) instead of opening the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{App, SOCKET_NAME};
use crate::config::{Config, Overrides};

/// `println!` for a stdout that may be closed early (`backbone export-openapi | head`): what
/// nobody reads any more is dropped instead of panicking; other write errors are reported.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(err) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if err.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("error: cannot write to stdout: {err}");
            }
        }
    }};
}

/// Backbone: a backend in one file.
#[derive(Debug, Parser)]
#[command(name = "backbone", version, about)]
pub struct Cli {
    /// Data directory (data.redb, search index, files, backups).
    #[arg(long, global = true, env = "BACKBONE_DIR", default_value = "./backbone_data")]
    pub dir: PathBuf,
    /// Config file (default: `<dir>/backbone.toml` when it exists).
    #[arg(long, global = true, env = "BACKBONE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr: `text` (for a terminal) or `json` (one object per line, for
    /// journald and log shippers). Overrides `log_format` / `BACKBONE_LOG_FORMAT`.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
        #[arg(long)]
        http: Option<String>,
    },
    /// Manage superusers.
    Superuser {
        #[command(subcommand)]
        action: SuperuserAction,
    },
    /// Inspect and steer background jobs (works whether or not `serve` runs).
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Full-text search administration (works whether or not `serve` runs).
    Search {
        #[command(subcommand)]
        action: SearchAction,
    },
    /// Queue a test email (through the outbox, like every email) to TO with the current
    /// mail settings. With the server running it goes through its admin socket and is sent
    /// at once; otherwise it is stored and sent when `serve` next starts.
    SendTestEmail {
        /// Recipient address.
        to: String,
        /// Template: verification, password-reset, email-change, otp, export-ready or alert.
        #[arg(long, default_value = "verification")]
        template: String,
    },
    /// Print the OpenAPI spec of the static API (the committed openapi/openapi.json).
    ExportOpenapi,
    /// Verify the data file: records, counters, identities, relation references and index
    /// entries agree. Read-only; the server must be stopped.
    Check {
        /// If the file needs recovery after a crash, recover it first (opens it writable).
        #[arg(long)]
        repair: bool,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum SuperuserAction {
    /// Create a superuser, or set the password of the existing one with this email.
    Upsert { email: String, password: String },
    /// Create a superuser (refused when one with this email exists).
    Create { email: String, password: String },
    /// Set the password of an existing superuser.
    Update { email: String, password: String },
    /// Delete a superuser (not the only one).
    Delete { email: String },
    /// Print a one-time code for a superuser's auth-with-otp (needs OTP enabled on
    /// `_superusers`).
    Otp { email: String },
}

#[derive(Debug, Subcommand)]
pub enum SearchAction {
    /// Queue a `search.reindex` job that rebuilds one collection's documents, or the whole
    /// index when no collection is named. With the server running it starts at once;
    /// otherwise it runs when `serve` next starts. Prints the job id.
    Reindex {
        /// Collection name or id (default: every collection).
        collection: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// List jobs, newest first (tab-separated: id, state, kind, queue, attempt, run at, last error).
    List {
        /// scheduled, available, running, completed, retrying, dead or cancelled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        /// Most jobs shown.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the JSON page instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a job again now (replays dead, cancelled or completed jobs).
    Retry { id: String },
    /// Cancel a waiting or running job.
    Cancel { id: String },
}

/// Variables the config layer reads.
fn backbone_env() -> BTreeMap<String, String> {
    std::env::vars().filter(|(k, _)| k.starts_with("BACKBONE_")).collect()
}

/// Loads the layered config for this invocation.
pub fn load_config(cli: &Cli, http: Option<String>) -> Result<Config, String> {
    Config::load(
        &cli.dir,
        cli.config.as_deref(),
        &backbone_env(),
        &Overrides { http, log_format: cli.log_format.clone() },
    )
    .map_err(|e| e.to_string())
}

/// Runs a parsed command; the error is printed by `main`.
pub async fn run(cli: Cli) -> Result<(), String> {
    if !matches!(cli.command, Command::Version | Command::ExportOpenapi) {
        // Everything created from here on in the data directory is the owner's alone,
        // including what redb and tantivy create (the systemd unit's `UMask=0077`, for
        // `serve` started by hand).
        crate::datadir::restrict_umask();
    }
    match &cli.command {
        Command::Check { repair } => check(&cli, *repair),
        Command::Version => {
            say!("backbone {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::ExportOpenapi => {
            let spec = crate::api::openapi::static_spec();
            let text = serde_json::to_string_pretty(&spec).map_err(|e| e.to_string())?;
            say!("{text}");
            Ok(())
        }
        Command::Serve { http } => serve(&cli, http.clone()).await,
        Command::Superuser { action: SuperuserAction::Upsert { email, password } } => {
            superuser_upsert(&cli, email, password).await
        }
        Command::Superuser { action } => superuser_command(&cli, action).await,
        Command::Jobs { action } => jobs_command(&cli, action).await,
        Command::Search { action: SearchAction::Reindex { collection } } => {
            search_reindex(&cli, collection.as_deref()).await
        }
        Command::SendTestEmail { to, template } => send_test_email(&cli, to, template).await,
    }
}

/// Installs the SIGINT/SIGTERM handlers now (before the server announces itself,
/// so a supervisor's early TERM is a graceful stop, not the default kill) and
/// returns a future that resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let mut signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let interrupt = async {
                match signals.0.as_mut() {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            let terminate = async {
                match signals.1.as_mut() {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = interrupt => {},
                () = terminate => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn serve(cli: &Cli, http: Option<String>) -> Result<(), String> {
    let config = load_config(cli, http)?;
    crate::cli::init_tracing(&config);
    let listener = tokio::net::TcpListener::bind(&config.http)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.http))?;
    let app = App::build(config, &cli.dir).await.map_err(|e| e.to_string())?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let admin = app.bind_admin_socket().map_err(|e| format!("cannot bind the admin socket: {e}"))?;
    let setup_token = app.auth.issue_setup_token().await.map_err(|e| e.to_string())?;
    if let Some(token) = &setup_token {
        let url = app.config.public_url(Some(local));
        if app.config.log_format == "json" {
            // One structured event, so stderr stays one JSON object per line.
            tracing::warn!(
                setup_token = %token,
                setup_url = %format!("{url}/api/setup"),
                admin_url = %format!("{url}/_/#/setup/{token}"),
                "no superuser exists yet: open admin_url, or POST {{token, email, password}} to setup_url (the token works once, until restart)"
            );
        } else {
            eprintln!(
                "\nNo superuser exists yet. Create the first one (the token works once, until restart):\n  \
                 open {url}/_/#/setup/{token} in a browser,\n  \
                 or: curl -X POST {url}/api/setup -H 'Content-Type: application/json' \\\n    \
                 -d '{{\"token\":\"{token}\",\"email\":\"you@example.com\",\"password\":\"a-long-password\"}}'\n  \
                 or run: backbone superuser upsert EMAIL PASSWORD --dir {}\nSETUP_TOKEN={token}\n",
                cli.dir.display()
            );
        }
    }
    let shutdown = shutdown_signal();
    say!(
        "Backbone {} listening on http://{local} (data: {}){}",
        env!("CARGO_PKG_VERSION"),
        cli.dir.display(),
        if setup_token.is_some() { " [setup required]" } else { "" }
    );
    app.run(listener, admin, shutdown).await.map_err(|e| e.to_string())
}

/// Sends one HTTP request over the admin socket and returns (status, body).
async fn socket_request(
    socket: &Path,
    path: &str,
    body: &serde_json::Value,
) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    let payload = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: backbone\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

async fn superuser_upsert(cli: &Cli, email: &str, password: &str) -> Result<(), String> {
    let socket = cli.dir.join(SOCKET_NAME);
    let body = serde_json::json!({"email": email, "password": password});
    if let Ok((status, text)) = socket_request(&socket, "/superusers/upsert", &body).await {
        if status == 200 {
            say!("superuser {email} saved (through the running server)");
            return Ok(());
        }
        return Err(format!("the running server refused: {text}"));
    }
    let config = load_config(cli, None)?;
    let app = App::build(config, &cli.dir).await.map_err(|e| match e {
        crate::app::AppError::Store(crate::store::StoreError::Locked) => format!(
            "the data file is held by a running server, but its admin socket {} does not answer",
            socket.display()
        ),
        other => other.to_string(),
    })?;
    let result = app.auth.upsert_superuser(email, password).await;
    let store = app.store.clone();
    let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
    match result {
        Ok(_) => {
            say!("superuser {email} saved");
            Ok(())
        }
        Err(err) => Err(format!("{err}: {}", describe_validation(&err))),
    }
}

/// `backbone superuser create|update|delete|otp`: through the running server's socket, or
/// on the data file directly.
async fn superuser_command(cli: &Cli, action: &SuperuserAction) -> Result<(), String> {
    let (name, email, password) = match action {
        SuperuserAction::Create { email, password } => ("create", email, Some(password)),
        SuperuserAction::Update { email, password } => ("update", email, Some(password)),
        SuperuserAction::Delete { email } => ("delete", email, None),
        SuperuserAction::Otp { email } => ("otp", email, None),
        SuperuserAction::Upsert { email, password } => return superuser_upsert(cli, email, password).await,
    };
    let socket = cli.dir.join(SOCKET_NAME);
    let body = serde_json::json!({"email": email, "password": password});
    let answer = match socket_request(&socket, &format!("/superusers/{name}"), &body).await {
        Ok((200, text)) => serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default(),
        Ok((_, text)) => return Err(format!("the running server refused: {}", problem_message(&text))),
        Err(_) => {
            let app = open_offline(cli).await?;
            let result = match action {
                SuperuserAction::Create { email, password } => {
                    app.auth.create_superuser(email, password).await
                }
                SuperuserAction::Update { email, password } => {
                    app.auth.update_superuser(email, password).await
                }
                SuperuserAction::Delete { email } => {
                    app.auth.delete_superuser(email).await.map(|()| serde_json::json!({}))
                }
                SuperuserAction::Otp { email } => app
                    .auth
                    .superuser_otp(email)
                    .await
                    .map(|(otp_id, code)| serde_json::json!({"otpId": otp_id, "password": code})),
                SuperuserAction::Upsert { .. } => Ok(serde_json::json!({})),
            };
            let store = app.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
            result.map_err(|err| format!("{err}: {}", describe_validation(&err)))?
        }
    };
    match action {
        SuperuserAction::Otp { .. } => {
            say!(
                "otpId: {}\npassword: {}",
                answer["otpId"].as_str().unwrap_or_default(),
                answer["password"].as_str().unwrap_or_default()
            );
        }
        SuperuserAction::Delete { .. } => say!("superuser {email} deleted"),
        _ => say!("superuser {email} saved"),
    }
    Ok(())
}

/// Opens the data directory for a one-off command when no server holds it.
async fn open_offline(cli: &Cli) -> Result<std::sync::Arc<App>, String> {
    let config = load_config(cli, None)?;
    App::build(config, &cli.dir).await.map_err(|e| match e {
        crate::app::AppError::Store(crate::store::StoreError::Locked) => format!(
            "the data file is held by a running server, but its admin socket {} does not answer",
            cli.dir.join(SOCKET_NAME).display()
        ),
        other => other.to_string(),
    })
}

/// A problem+json body's message, for errors printed by the CLI.
fn problem_message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string))
        .unwrap_or_else(|| text.to_string())
}

/// `backbone search reindex [collection]`: through the running server's socket, or by
/// storing the job directly (it runs when `serve` starts).
async fn search_reindex(cli: &Cli, collection: Option<&str>) -> Result<(), String> {
    let socket = cli.dir.join(SOCKET_NAME);
    let body = serde_json::json!({ "collection": collection });
    let job: serde_json::Value = match socket_request(&socket, "/search/reindex", &body).await {
        Ok((200, text)) => serde_json::from_str(&text).map_err(|e| e.to_string())?,
        Ok((_, text)) => return Err(problem_message(&text)),
        Err(_) => {
            let app = open_offline(cli).await?;
            let result = app.search.enqueue_reindex(&app.jobs, collection).await;
            let store = app.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
            result.map_err(|e| e.to_string())?.job.to_json()
        }
    };
    say!(
        "reindex job {} is {}",
        job["id"].as_str().map(str::to_string).unwrap_or_else(|| job["id"].to_string()),
        job["state"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `backbone jobs ...`: through the running server's socket, or on the file directly (no
/// workers are started: the command never runs jobs).
async fn jobs_command(cli: &Cli, action: &JobsAction) -> Result<(), String> {
    let socket = cli.dir.join(SOCKET_NAME);
    let (path, body) = match action {
        JobsAction::List { state, kind, queue, limit, .. } => (
            "/jobs/list".to_string(),
            serde_json::json!({"state": state, "kind": kind, "queue": queue, "perPage": limit.max(&1).to_string()}),
        ),
        JobsAction::Retry { id } => ("/jobs/retry".to_string(), serde_json::json!({"id": id})),
        JobsAction::Cancel { id } => ("/jobs/cancel".to_string(), serde_json::json!({"id": id})),
    };
    let answer: serde_json::Value = match socket_request(&socket, &path, &body).await {
        Ok((200, text)) => serde_json::from_str(&text).map_err(|e| e.to_string())?,
        Ok((_, text)) => return Err(problem_message(&text)),
        Err(_) => {
            let app = open_offline(cli).await?;
            let jobs = app.jobs.clone();
            let result = match action {
                JobsAction::List { state, kind, queue, limit, .. } => jobs
                    .list(crate::jobs::ListFilter {
                        state: state.clone(),
                        kind: kind.clone(),
                        queue: queue.clone(),
                        page: None,
                        per_page: Some(limit.max(&1).to_string()),
                    })
                    .await
                    .map(|page| {
                        serde_json::json!({
                            "page": page.page, "perPage": page.per_page, "totalItems": page.total_items,
                            "items": page.items.iter().map(|j| j.to_json()).collect::<Vec<_>>(),
                        })
                    }),
                JobsAction::Retry { id } | JobsAction::Cancel { id } => {
                    let parsed = id.parse::<u64>().map_err(|_| format!("no job with id {id:?}"));
                    match (parsed, action) {
                        (Err(e), _) => Err(crate::jobs::JobsError::NotFound(e)),
                        (Ok(n), JobsAction::Retry { .. }) => jobs.retry(n).await.map(|j| j.to_json()),
                        (Ok(n), _) => jobs.cancel(n).await.map(|j| j.to_json()),
                    }
                }
            };
            let store = app.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
            result.map_err(|e| e.to_string())?
        }
    };
    match action {
        JobsAction::List { json: true, .. } => {
            say!("{}", serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())?);
        }
        JobsAction::List { .. } => {
            say!("id\tstate\tkind\tqueue\tattempt\trun_at\tlast_error");
            for job in answer["items"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let s = |k: &str| job[k].as_str().unwrap_or("").to_string();
                say!(
                    "{}\t{}\t{}\t{}\t{}/{}\t{}\t{}",
                    s("id"),
                    s("state"),
                    s("kind"),
                    s("queue"),
                    job["attempt"],
                    job["maxAttempts"],
                    s("runAt"),
                    s("lastError").replace(['\n', '\t'], " ")
                );
            }
            eprintln!("{} of {} jobs", answer["items"].as_array().map_or(0, Vec::len), answer["totalItems"]);
        }
        JobsAction::Retry { id } => say!("job {id} is {}", answer["state"].as_str().unwrap_or("?")),
        JobsAction::Cancel { id } => {
            let note = if answer["cancelRequested"].as_bool() == Some(true) {
                " (cancellation requested)"
            } else {
                ""
            };
            say!("job {id} is {}{note}", answer["state"].as_str().unwrap_or("?"));
        }
    }
    Ok(())
}

/// `backbone send-test-email TO`: through the running server's socket, or stored directly
/// in the data file for the next `serve`.
async fn send_test_email(cli: &Cli, to: &str, template: &str) -> Result<(), String> {
    let socket = cli.dir.join(SOCKET_NAME);
    let body = serde_json::json!({"email": to, "template": template});
    match socket_request(&socket, "/mail/test", &body).await {
        Ok((202, text)) => {
            let job: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            say!(
                "test email to {to} queued as job {} (see GET /api/mail/log or `backbone jobs list --kind mail.send`)",
                job["id"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        Ok((_, text)) => Err(problem_message(&text)),
        Err(_) => {
            let app = open_offline(cli).await?;
            let result = app.mail.send_test(to, Some(template)).await;
            let store = app.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
            let id = result.map_err(|e| match e {
                crate::mail::MailError::Validation(invalid) => match invalid.first() {
                    Some((field, error)) => format!("{field}: {}", error.message),
                    None => invalid.message,
                },
                other => other.to_string(),
            })?;
            say!("test email to {to} stored as job {}; it is sent when `backbone serve` starts", id.0);
            Ok(())
        }
    }
}

fn describe_validation(err: &crate::accounts::AuthError) -> String {
    match err {
        crate::accounts::AuthError::Records(crate::records::RecordsError::Validation { fields, .. }) => {
            fields.iter().map(|(k, v)| format!("{k}: {}", v.message)).collect::<Vec<_>>().join("; ")
        }
        _ => String::new(),
    }
}

/// Installs the log subscriber (stderr, text or JSON).
pub fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: a log redirected to a file or a pipe stays plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if config.log_format == "json" { builder.json().try_init() } else { builder.try_init() };
}

fn check(cli: &Cli, repair: bool) -> Result<(), String> {
    use crate::store::{ReadOnlyStore, Store, StoreError, StoreOptions};
    let path = cli.dir.join(crate::app::DATA_FILE);
    if !path.exists() {
        return Err(format!("no data file at {}", path.display()));
    }
    let store = match ReadOnlyStore::open(&path) {
        Ok(store) => store,
        Err(StoreError::Unavailable(reason)) if repair => {
            eprintln!("{reason}; recovering it");
            let writable = Store::open(&path, &StoreOptions::default()).map_err(|e| e.to_string())?;
            writable.shutdown();
            drop(writable);
            ReadOnlyStore::open(&path).map_err(|e| e.to_string())?
        }
        Err(StoreError::Unavailable(reason)) => {
            return Err(format!(
                "{reason}; run `backbone check --repair` (or start the server once) to recover it"
            ))
        }
        Err(StoreError::Locked) => {
            return Err("the data file is in use by a running server; stop it first".into())
        }
        Err(err) => return Err(err.to_string()),
    };
    let mut report = store.read(crate::records::check::check).map_err(|e| e.to_string())?;
    let jobs = store.read(crate::jobs::check::check).map_err(|e| e.to_string())?;
    report.problems.extend(jobs.problems);
    report.notes.extend(jobs.notes);
    let files_root = cli.dir.join("files");
    let files = store.read(|tx| crate::files::check::check(tx, &files_root)).map_err(|e| e.to_string())?;
    report.problems.extend(files.problems);
    report.notes.extend(files.notes);
    let search_dir = cli.dir.join("search");
    let search = store
        .read(|tx| Ok::<_, crate::store::StoreError>(crate::search::check::check(tx, &search_dir)))
        .map_err(|e| e.to_string())?;
    report.problems.extend(search.problems);
    report.notes.extend(search.notes);
    for note in &report.notes {
        say!("note: {note}");
    }
    if report.problems.is_empty() {
        say!(
            "ok: {} collections, {} records, {} jobs, {} files, all tables consistent",
            report.collections,
            report.records,
            jobs.jobs,
            files.files
        );
        Ok(())
    } else {
        for problem in &report.problems {
            say!("problem: {problem}");
        }
        Err(format!("{} problem(s) found", report.problems.len()))
    }
}
