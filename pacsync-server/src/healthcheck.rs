//! `pacsync-server healthcheck`: asks the local server's `/health/ready`
//! and exits 0 only on 200 — for container HEALTHCHECKs, since a slim image
//! has no curl. With TLS configured it speaks TLS and accepts exactly the
//! configured certificate (whatever name it carries), so it needs neither a
//! CA bundle nor a hostname.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::Settings;
use crate::tls::verify::WithoutCa;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Ok when the server answers 200 on `/health/ready`.
pub async fn check(settings: &Settings) -> anyhow::Result<()> {
    // A wildcard listen address is reached on loopback.
    let host = match settings.http_host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" | "[::]" => "::1",
        h => h,
    };
    let addr = format!("{host}:{}", settings.http_port);
    let work = async {
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        match &settings.tls {
            None => ask(tcp, host).await,
            Some(tls) => {
                let pinned = CertificateDer::pem_file_iter(&tls.cert)
                    .with_context(|| format!("reading {}", tls.cert.display()))?
                    .next()
                    .context("no certificate in the TLS certificate file")??;
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(WithoutCa::pinned(pinned, provider)))
                    .with_no_client_auth();
                let name = ServerName::try_from("pacsync-server.invalid")?;
                let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake")?;
                ask(stream, host).await
            }
        }
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {addr} within {TIMEOUT:?}"))?
}

async fn ask<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, host: &str) -> anyhow::Result<()> {
    let request =
        format!("GET /health/ready HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = vec![0u8; 512];
    let n = stream.read(&mut head).await?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        anyhow::bail!("not ready: {status}")
    }
}
