//! `App`: the running backend's state (config, store, records, auth, jobs, mail, search,
//! files, webhooks) and the server loop.
//!
//! `App::build` opens everything; `App::run(listener, admin_socket, shutdown)` serves the HTTP API and
//! the admin socket until `shutdown` resolves, then finishes in-flight requests and flushes
//! the writer. Tests call these directly with a port-0 listener.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use poem::listener::{TcpAcceptor, UnixAcceptor};
use poem::Server;

use crate::accounts::{Auth, AuthError};
use crate::auth::limits::Limiter;
use crate::auth::password::PasswordHasher;
use crate::config::Config;
use crate::files::{Files, FilesError};
use crate::jobs::clock::SystemClock;
use crate::jobs::{Jobs, JobsError, Registry};
use crate::mail::{Mail, MailError};
use crate::observe::health::{self, Check, Readiness};
use crate::observe::history::Reading;
use crate::observe::{Notifiers, Observe};
use crate::realtime::Realtime;
use crate::records::hooks::ChangeHooks;
use crate::records::{Records, RecordsError};
use crate::search::Search;
use crate::store::{Store, StoreError, StoreOptions};
use crate::util::metrics::Exposition;
use crate::webhooks::{WebhookError, Webhooks};

/// Name of the admin socket inside the data directory.
pub const SOCKET_NAME: &str = "backbone.sock";
/// Name of the data file inside the data directory.
pub const DATA_FILE: &str = "data.redb";

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("startup failed: {0}")]
    Startup(String),
}

impl From<RecordsError> for AppError {
    fn from(err: RecordsError) -> Self {
        AppError::Startup(err.to_string())
    }
}

impl From<JobsError> for AppError {
    fn from(err: JobsError) -> Self {
        AppError::Startup(err.to_string())
    }
}

impl From<MailError> for AppError {
    fn from(err: MailError) -> Self {
        AppError::Startup(err.to_string())
    }
}

impl From<FilesError> for AppError {
    fn from(err: FilesError) -> Self {
        AppError::Startup(err.to_string())
    }
}

impl From<WebhookError> for AppError {
    fn from(err: WebhookError) -> Self {
        AppError::Startup(err.to_string())
    }
}

impl From<AuthError> for AppError {
    fn from(err: AuthError) -> Self {
        AppError::Startup(err.to_string())
    }
}

/// Everything a request handler can reach.
pub struct App {
    pub config: Config,
    pub dir: PathBuf,
    pub store: Store,
    pub records: Records,
    pub auth: Auth,
    /// The job queue; workers run only inside [`App::run`] (CLI commands never run jobs).
    pub jobs: Jobs,
    /// Rate limits and the client-address rules.
    pub limiter: Limiter,
    /// Outgoing email: templates, the outbox (`mail.send` jobs), settings and delivery log.
    pub mail: Mail,
    /// Metrics, the request log, readiness checks, host figures.
    pub observe: Observe,
    /// Full-text search; its indexer runs only inside [`App::run`].
    pub search: Search,
    /// Uploaded blobs, downloads and image variants.
    pub files: Files,
    /// Outbound webhooks: signed deliveries (`webhooks.deliver` jobs) and the target policy.
    pub webhooks: Webhooks,
    /// Realtime event streams over the change feed; its dispatcher runs only inside [`App::run`].
    pub realtime: Realtime,
    /// The HTTP listener's address, once [`App::run`] has it (shared with the alert emails'
    /// links).
    bound: Arc<OnceLock<SocketAddr>>,
}

impl App {
    /// Opens the data directory and every service.
    pub async fn build(config: Config, dir: &Path) -> Result<Arc<App>, AppError> {
        // Private (0700) before anything in it is created, opened or bound: it holds the
        // server secret and the token keys (see `datadir`).
        crate::datadir::prepare(dir)
            .map_err(|source| AppError::DataDir { path: dir.to_path_buf(), source })?;
        let options = StoreOptions {
            cache_bytes: config.store.cache_mb.max(1) << 20,
            max_batch: config.store.max_batch.max(1),
            ..StoreOptions::default()
        };
        let path = dir.join(DATA_FILE);
        let store = tokio::task::spawn_blocking(move || Store::open(&path, &options))
            .await
            .map_err(|e| AppError::Startup(e.to_string()))??;
        // Every record write also notes itself in the search outbox, in its own transaction.
        // ... and in the change feed realtime reads.
        let changes: Vec<Arc<dyn ChangeHooks>> =
            vec![Arc::new(crate::search::outbox::OutboxHooks), Arc::new(crate::realtime::feed::FeedHooks)];
        let mut records =
            Records::open(store.clone(), PasswordHasher::new(config.auth.hash_concurrency), changes).await?;
        records.set_query_budget(std::time::Duration::from_millis(config.limits.query_budget_ms));
        let auth = Auth::open(records.clone()).await?;
        let mut registry = Registry::with_builtins(config.jobs.test_kinds);
        let search = Search::new(store.clone(), records.clone(), dir);
        search.register(&mut registry);
        let alerts_slot: Arc<OnceLock<std::sync::Weak<crate::observe::alerts::Alerts>>> = Arc::default();
        crate::observe::alerts::register(&mut registry, alerts_slot.clone());
        let mail = Mail::prepare(store.clone(), &config, &mut registry).await?;
        let files = Files::prepare(
            dir,
            store.clone(),
            records.clone(),
            &config.files,
            config.limits.max_rss_mb,
            &mut registry,
        )?;
        let webhooks = Webhooks::prepare(store.clone(), &config, &mut registry)?;
        let jobs = Jobs::open(store.clone(), config.jobs.clone(), registry, Arc::new(SystemClock)).await?;
        files.attach(jobs.clone());
        // This process owns the data file (redb's lock), so nothing is uploading: every temp
        // file and unreferenced blob is left over from a crash.
        match files.sweep(Duration::ZERO).await {
            Ok(report) if report != crate::files::SweepReport::default() => {
                tracing::info!(?report, "swept leftover uploads and unreferenced files");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "file sweep at startup failed"),
        }
        if let Err(err) = files.seed_sweep_cron().await {
            tracing::warn!(error = %err, "the daily file sweep schedule was not created");
        }
        let limiter = Limiter::new(&config.rate_limits).map_err(AppError::Startup)?;
        let mail = Mail::new(mail, jobs.clone());
        let webhooks = Webhooks::new(webhooks, jobs.clone());
        let bound: Arc<OnceLock<SocketAddr>> = Arc::default();
        let public_url = {
            let (config, bound) = (config.clone(), bound.clone());
            Arc::new(move || config.public_url(bound.get().copied()))
        };
        let notifiers = Notifiers { mail: mail.clone(), webhooks: webhooks.clone(), public_url };
        let observe = Observe::new(store.clone(), dir, &config.observe, &config.limits, notifiers)
            .map_err(AppError::Startup)?;
        let _ = alerts_slot.set(Arc::downgrade(&observe.alerts));
        let realtime = Realtime::new(store.clone(), records.clone(), config.realtime.clone());
        let observer = realtime.clone();
        jobs.watch(
            realtime.jobs_watched(),
            Arc::new(move |id, action, job| observer.job_changed(id, action, job)),
        );
        let app = Arc::new(App {
            realtime,
            observe,
            search,
            limiter,
            config,
            dir: dir.to_path_buf(),
            store,
            records,
            auth,
            jobs,
            mail,
            files,
            webhooks,
            bound,
        });
        Ok(app)
    }

    /// Request body limits from the config.
    pub fn body_limits(&self) -> crate::api::body::BodyLimits {
        crate::api::body::BodyLimits {
            bytes: self.config.limits.max_body_bytes,
            deadline: Duration::from_secs(self.config.limits.body_timeout_secs.max(1)),
        }
    }

    /// The URL clients reach this server at.
    pub fn public_url(&self) -> String {
        self.config.public_url(self.bound.get().copied())
    }

    /// The `/metrics` document: each part renders its own families, in the order
    /// `observe::exposition` lists.
    pub async fn render_metrics(&self) -> Result<String, JobsError> {
        let mut out = Exposition::default();
        self.observe.render_http_metrics(&mut out);
        self.limiter.render_metrics(&mut out);
        self.observe.pressure.render_metrics(&mut out);
        self.store.render_metrics(&mut out);
        self.search.render_metrics(&mut out).await;
        self.jobs.render_metrics(&mut out).await?;
        self.mail.counters().render_metrics(&mut out);
        self.auth.logins.render_metrics(&mut out);
        self.realtime.render_metrics(&mut out);
        self.observe.render_process_metrics(&mut out).await;
        Ok(out.finish())
    }

    /// The readiness checks (`GET /api/ready`): a probe write, the job workers, the free
    /// disk space, the search indexer.
    pub async fn readiness(&self) -> Vec<Check> {
        let host = self.observe.host.read().await;
        let state = Readiness {
            workers_enabled: self.config.jobs.workers,
            workers_running: self.jobs.is_started(),
            disk_free_bytes: host.disk_free_bytes,
            min_disk_free_mb: self.config.observe.ready_min_disk_free_mb,
            search_healthy: self.search.is_healthy(),
        };
        health::checks(&self.store, &state).await
    }

    /// What the metric history sampler stores, read from every service now.
    pub async fn metric_reading(&self) -> Reading {
        let at_ms = chrono::Utc::now().timestamp_millis();
        let http = self.observe.http();
        let (http_requests, http_errors, http_latency) = http.map(|h| h.totals()).unwrap_or_default();
        Reading {
            at_ms,
            http_requests,
            http_errors,
            http_latency,
            http_in_flight: http.map(|h| h.in_flight()).unwrap_or(0),
            store_commits: self.store.writer_stats().commits.get(),
            store_file_bytes: self.store.file_bytes(),
            jobs: self.jobs.stats().await.ok(),
            mail_sent: self.mail.counters().sent.get(),
            mail_failed: self.mail.counters().failed.get(),
            logins_failed: self.auth.logins.failed.get(),
            rate_limited: self.limiter.refused.get(),
            host: self.observe.host.read().await,
            search_lag: self.search.status().await.ok().map(|s| s.lag),
        }
    }

    /// Serves until `shutdown` resolves; then drains requests and flushes the store.
    /// Binds the admin socket `<dir>/backbone.sock` (mode 0600), replacing a stale one. Bind
    /// it before announcing the server, so CLI commands find it as soon as the server is up.
    ///
    /// The socket is created by `bind` with the umask's mode and `chmod`ed afterwards; that
    /// is no window for other users, because [`App::build`] made the data directory 0700
    /// before (`datadir::prepare`): nobody else can reach a path inside it.
    pub fn bind_admin_socket(&self) -> std::io::Result<std::os::unix::net::UnixListener> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(SOCKET_NAME);
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    }

    pub async fn run(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        admin_listener: std::os::unix::net::UnixListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let local = listener.local_addr()?;
        let _ = self.bound.set(local);
        let acceptor = TcpAcceptor::from_tokio(listener)?;
        let grace = Duration::from_secs(self.config.limits.shutdown_grace_secs);
        if let Err(err) = self.observe.alerts.seed_defaults().await {
            tracing::warn!(error = %err, "default alert rules not stored");
        }
        // Before the workers: a missing index enqueues its rebuild job first.
        self.search.start(&self.jobs).await.map_err(|e| std::io::Error::other(e.to_string()))?;
        if self.config.jobs.workers {
            let orphans = self.jobs.start().await.map_err(|e| std::io::Error::other(e.to_string()))?;
            if orphans > 0 {
                tracing::info!(orphans, "orphaned jobs requeued at startup");
            }
        }
        let idle = Duration::from_secs(self.config.limits.idle_timeout_secs.max(1));

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // Open event streams end when the server stops (else they would hold the shutdown
        // for the whole grace period).
        let mut realtime_stop = stop_rx.clone();
        self.realtime
            .start(async move {
                let _ = realtime_stop.changed().await;
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let socket_path = self.dir.join(SOCKET_NAME);
        let admin_acceptor = UnixAcceptor::from_std(admin_listener)?;
        let admin_app = self.clone();
        let mut admin_stop = stop_rx.clone();
        let admin = tokio::spawn(async move {
            let result = Server::new_with_acceptor(admin_acceptor)
                .name("admin-socket")
                .run_with_graceful_shutdown(
                    crate::api::admin_socket_routes(admin_app),
                    async move {
                        let _ = admin_stop.changed().await;
                    },
                    Some(Duration::from_secs(5)),
                )
                .await;
            let _ = std::fs::remove_file(&socket_path);
            if let Err(err) = result {
                tracing::warn!(error = %err, "admin socket stopped");
            }
        });

        let sweeper_app = self.clone();
        let mut sweeper_stop = stop_rx.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => sweeper_app.limiter.forget_idle(),
                    _ = sweeper_stop.changed() => break,
                }
            }
        });

        let log_task = tokio::spawn(self.observe.requests.clone().run(stop_rx.clone()));
        let reader = self.clone();
        let history_task = tokio::spawn(self.observe.history.clone().run(
            self.observe.alerts.clone(),
            move || {
                let app = reader.clone();
                async move { app.metric_reading().await }
            },
            stop_rx.clone(),
        ));
        let heartbeat_task = tokio::spawn(crate::observe::heartbeat::run(
            self.store.clone(),
            self.config.observe.clone(),
            stop_rx.clone(),
        ));
        let pressure_task = tokio::spawn(self.observe.pressure.clone().run(stop_rx.clone()));

        let mut http_stop = stop_rx;
        let http =
            Server::new_with_acceptor(acceptor).name("http").idle_timeout(idle).run_with_graceful_shutdown(
                crate::api::routes(self.clone()),
                async move {
                    let _ = http_stop.changed().await;
                },
                Some(grace),
            );
        let trigger = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stop_tx.send(true);
        };
        let (result, ()) = tokio::join!(http, trigger);
        let _ = admin.await;
        let _ = sweeper.await;
        let _ = history_task.await;
        let _ = heartbeat_task.await;
        let _ = pressure_task.await;
        // After the HTTP server stopped: the last rows are flushed.
        let _ = log_task.await;
        self.jobs.shutdown(grace).await;
        let search = self.search.clone();
        let _ = tokio::task::spawn_blocking(move || search.stop()).await;
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
        tracing::info!("stopped; all acknowledged writes are on disk");
        result
    }
}
