//! The one TLS crypto provider (rustls with ring) of the process.

/// Installs ring as the process-wide rustls provider; later calls are no-ops. Every TLS
/// client (SMTP, webhooks) calls it before building a config.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
