//! TLS for the listener's connection, by rustls (ring), following the
//! libpq options of `DATABASE_URL` the way libpq (which the pooled
//! connections use) reads them:
//!
//! - `sslmode`: `disable`; `allow` and `prefer` (the default): TLS when the
//!   server offers it (`allow` is taken as `prefer`); `require`: TLS or
//!   nothing; `verify-ca`: and the certificate chains to `sslrootcert`;
//!   `verify-full`: and also names the host.
//! - `sslrootcert`: the CA certificates (PEM), by default
//!   `~/.postgresql/root.crt`; with `require` the chain is checked when
//!   that file exists, as libpq does.
//! - `sslcert` and `sslkey`: a client certificate (PEM).
//!
//! tokio-postgres knows only `disable`, `prefer` and `require` and no
//! certificate options, so these are taken out of the URL before it reads
//! the rest. Channel binding is not offered (SCRAM works without it).

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, bail};
use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::tls::verify::WithoutCa;

/// The libpq TLS options of a connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
}

const TAKEN: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl TlsOptions {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value),
            "sslcert" => self.sslcert = Some(value),
            _ => self.sslkey = Some(value),
        }
    }
}

/// Splits the TLS options off a connection string (URL or `key=value`
/// form); returns the rest, for tokio-postgres, and the options.
pub fn split_options(url: &str) -> anyhow::Result<(String, TlsOptions)> {
    let mut options = TlsOptions::default();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), options));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if TAKEN.contains(&k) {
                options.set(k, percent_decode(v)?);
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, options));
    }
    let mut kept = Vec::new();
    for (key, value, raw) in conninfo_pairs(url)? {
        if TAKEN.contains(&key.as_str()) {
            options.set(&key, value);
        } else {
            kept.push(raw);
        }
    }
    Ok((kept.join(" "), options))
}

fn percent_decode(s: &str) -> anyhow::Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .context("truncated %-escape in DATABASE_URL")?;
            out.push(u8::from_str_radix(hex, 16).context("bad %-escape in DATABASE_URL")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("DATABASE_URL option is not UTF-8")
}

/// `key=value` pairs of a libpq connection string (values optionally
/// single-quoted, `\` escaping), each with its original text.
fn conninfo_pairs(s: &str) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = s.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            return Ok(pairs);
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next().is_none_or(|(_, c)| c != '=') {
            bail!("DATABASE_URL: expected = after {key:?}");
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let mut end = s.len();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next() {
                    Some((_, '\\')) => {
                        value.push(chars.next().context("DATABASE_URL: trailing \\")?.1)
                    }
                    Some((i, '\'')) => {
                        end = i + 1;
                        break;
                    }
                    Some((_, c)) => value.push(c),
                    None => bail!("DATABASE_URL: unterminated quote"),
                }
            }
        } else {
            while let Some((i, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().context("DATABASE_URL: trailing \\")?.1);
                } else {
                    value.push(c);
                }
                end = i + c.len_utf8();
            }
            if value.is_empty() {
                end = chars.peek().map_or(s.len(), |&(i, _)| i);
            }
        }
        pairs.push((key, value, s[start..end].to_owned()));
    }
}

/// How the listener connects, from the options.
pub struct Plan {
    /// What tokio-postgres is told.
    pub mode: SslMode,
    /// The connector; unused with [`SslMode::Disable`].
    pub connector: RustlsConnect,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("mode", &self.mode).finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Encryption only (libpq's `prefer` and `require` without a CA file).
    Nothing,
    /// The chain up to a configured CA.
    Chain,
    /// The chain and the host name.
    ChainAndName,
}

fn default_root_cert() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
}

pub fn plan(options: &TlsOptions) -> anyhow::Result<Plan> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mode = options.sslmode.as_deref().unwrap_or("prefer");
    let explicit_root = options.sslrootcert.as_deref().map(PathBuf::from);
    let root = explicit_root
        .clone()
        .or_else(|| default_root_cert().filter(|p| p.exists()));
    let (mode, check) = match mode {
        "disable" => (SslMode::Disable, Check::Nothing),
        "allow" | "prefer" => (SslMode::Prefer, Check::Nothing),
        "require" if root.is_some() => (SslMode::Require, Check::Chain),
        "require" => (SslMode::Require, Check::Nothing),
        "verify-ca" => (SslMode::Require, Check::Chain),
        "verify-full" => (SslMode::Require, Check::ChainAndName),
        other => bail!("DATABASE_URL: unknown sslmode {other:?}"),
    };
    if explicit_root
        .as_deref()
        .is_some_and(|p| p.as_os_str() == "system")
    {
        bail!("DATABASE_URL: sslrootcert=system is not supported; name a CA file");
    }
    let verifier: Arc<dyn ServerCertVerifier> = match (check, root) {
        // libpq's `prefer` and `require` without a CA file: encryption,
        // no word on who is at the other end.
        (Check::Nothing, _) => Arc::new(WithoutCa::any(provider.clone())),
        (_, None) => bail!(
            "DATABASE_URL: sslmode={mode:?} needs sslrootcert (or ~/.postgresql/root.crt)",
            mode = options.sslmode.as_deref().unwrap_or_default()
        ),
        (check, Some(path)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&path)
                .with_context(|| format!("reading sslrootcert {}", path.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("parsing {}", path.display()))?)
                    .with_context(|| format!("a CA certificate in {}", path.display()))?;
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .context("sslrootcert")?;
            if check == Check::ChainAndName {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&options.sslcert, &options.sslkey) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading sslcert {cert}"))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("parsing sslcert {cert}"))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading sslkey {key}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("sslcert and sslkey do not fit together")?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("DATABASE_URL: sslcert and sslkey go together"),
    };
    Ok(Plan {
        mode,
        connector: RustlsConnect(Arc::new(config)),
    })
}

/// libpq's `verify-ca`: the chain must lead to a configured CA; the name
/// in the certificate is not compared with the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        // The chain is checked before the name: a name error means the
        // chain held.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// tokio-postgres's TLS hook, by tokio-rustls.
#[derive(Debug, Clone)]
pub struct RustlsConnect(Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnectTo;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnectTo, Self::Error> {
        Ok(RustlsConnectTo {
            config: self.0.clone(),
            name: ServerName::try_from(host.to_owned())?,
        })
    }
}

/// One handshake with a named host.
#[derive(Debug)]
pub struct RustlsConnectTo {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnectTo
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await
                .map(RustlsStream)
        })
    }
}

#[derive(Debug)]
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_options_come_off_and_the_rest_stays() {
        let (rest, o) = split_options(
            "postgres://u:p@db:5432/x?application_name=a&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem",
        )
        .expect("split");
        assert_eq!(rest, "postgres://u:p@db:5432/x?application_name=a");
        assert_eq!(o.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(o.sslrootcert.as_deref(), Some("/etc/ca x.pem"));
        let (rest, o) = split_options("postgresql://db/x?sslmode=require").expect("split");
        assert_eq!(
            (rest.as_str(), o.sslmode.as_deref()),
            ("postgresql://db/x", Some("require"))
        );
        let (rest, o) = split_options("postgres://db/x").expect("split");
        assert_eq!(
            (rest.as_str(), o),
            ("postgres://db/x", TlsOptions::default())
        );
    }

    #[test]
    fn conninfo_options_come_off_and_the_rest_stays() {
        let (rest, o) =
            split_options("host=db password='a \\' b' sslmode = require sslkey=/k\\ y dbname=x")
                .expect("split");
        assert_eq!(rest, "host=db password='a \\' b' dbname=x");
        assert_eq!(o.sslmode.as_deref(), Some("require"));
        assert_eq!(o.sslkey.as_deref(), Some("/k y"));
        assert!(split_options("host=db password='open").is_err());
        assert!(split_options("host").is_err());
    }

    #[test]
    fn modes_map_to_what_tokio_postgres_knows() {
        let with = |mode: &str| TlsOptions {
            sslmode: Some(mode.into()),
            ..TlsOptions::default()
        };
        assert_eq!(plan(&with("disable")).expect("plan").mode, SslMode::Disable);
        assert_eq!(plan(&with("allow")).expect("plan").mode, SslMode::Prefer);
        assert_eq!(
            plan(&TlsOptions::default()).expect("plan").mode,
            SslMode::Prefer
        );
        assert_eq!(plan(&with("require")).expect("plan").mode, SslMode::Require);
        assert!(plan(&with("bogus")).is_err());
        let missing = TlsOptions {
            sslrootcert: Some("/nonexistent/ca.pem".into()),
            ..with("verify-full")
        };
        assert!(plan(&missing).is_err());
        let system = TlsOptions {
            sslrootcert: Some("system".into()),
            ..with("verify-ca")
        };
        assert!(plan(&system).is_err());
        let half = TlsOptions {
            sslcert: Some("/c.pem".into()),
            ..with("require")
        };
        assert!(plan(&half).is_err());
    }
}
