//! Liveness signals to the outside: systemd's `Type=notify` readiness and watchdog
//! keep-alive (`sd_notify`), and the dead-man's-switch heartbeat URL.
//!
//! Both are sent only while the server is healthy (the store takes writes), so a hung or
//! broken process stops pinging: systemd restarts it after `WatchdogSec`, and an external
//! monitor (healthchecks.io, Uptime Kuma push monitors, ...) alerts when pings stop.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::ObserveSection;
use crate::store::Store;

/// Tells systemd the server is ready (a no-op outside systemd).
pub fn notify_ready() {
    if let Err(err) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %err, "sd_notify READY failed");
    }
}

/// Tells systemd the server is stopping (a no-op outside systemd).
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// One GET of `url`; Ok when the answer is 2xx or 3xx.
async fn ping(url: &url::Url) -> Result<(), String> {
    let host = url.host_str().ok_or("the URL has no host")?.to_string();
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: backbone/{}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 64];
    let n = if url.scheme() == "https" {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
        tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        tls.read(&mut head).await.map_err(|e| e.to_string())?
    } else {
        let mut tcp = tcp;
        tcp.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        tcp.read(&mut head).await.map_err(|e| e.to_string())?
    };
    let status = String::from_utf8_lossy(head.get(..n).unwrap_or_default())
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("answered with status {status}"))
    }
}

/// Sends watchdog keep-alives (at half of systemd's `WatchdogSec`) and pings of
/// `[observe] heartbeat_url` every `heartbeat_secs` while `store` is healthy, until `stop`
/// fires.
pub async fn run(store: Store, config: ObserveSection, mut stop: tokio::sync::watch::Receiver<bool>) {
    notify_ready();
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let heartbeat_url = match config.heartbeat_url.as_str() {
        "" => None,
        raw => url::Url::parse(raw).ok(),
    };
    if watchdog.is_none() && heartbeat_url.is_none() {
        let _ = stop.changed().await;
        notify_stopping();
        return;
    }
    let heartbeat_every = Duration::from_secs(config.heartbeat_secs.max(1));
    let tick_every =
        watchdog.map_or(heartbeat_every, |w| w.min(heartbeat_every)).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ping: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if !store.is_healthy() {
            tracing::warn!("storage unhealthy: watchdog and heartbeat withheld");
            continue;
        }
        if watchdog.is_some() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
        if let Some(url) = &heartbeat_url {
            if last_ping.is_none_or(|t| t.elapsed() >= heartbeat_every) {
                last_ping = Some(tokio::time::Instant::now());
                match tokio::time::timeout(Duration::from_secs(10), ping(url)).await {
                    Ok(Ok(())) => tracing::debug!("heartbeat sent"),
                    Ok(Err(err)) => tracing::warn!(error = %err, "heartbeat ping failed"),
                    Err(_) => tracing::warn!("heartbeat ping timed out"),
                }
            }
        }
    }
    notify_stopping();
}
