//! The client side's server-certificate check where no CA is consulted:
//! rustls still checks that the server holds the key of the certificate it
//! shows (the handshake signatures), but the certificate itself is either
//! taken as it comes or compared with the one certificate expected.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Checks the handshake signatures and, when it pins one, that the server
/// shows exactly that certificate (whatever name it carries).
#[derive(Debug)]
pub(crate) struct WithoutCa {
    pinned: Option<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl WithoutCa {
    /// Accepts any certificate: encrypts, but does not tell the server from
    /// a man in the middle.
    pub(crate) fn any(provider: Arc<CryptoProvider>) -> Self {
        Self {
            pinned: None,
            provider,
        }
    }

    /// Accepts `cert` and nothing else.
    pub(crate) fn pinned(cert: CertificateDer<'static>, provider: Arc<CryptoProvider>) -> Self {
        Self {
            pinned: Some(cert),
            provider,
        }
    }
}

impl ServerCertVerifier for WithoutCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pinned {
            Some(cert) if cert.as_ref() != end_entity.as_ref() => Err(rustls::Error::General(
                "not the configured certificate".into(),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(bytes: &[u8]) -> CertificateDer<'static> {
        CertificateDer::from(bytes.to_vec())
    }

    fn check(verifier: &WithoutCa, shown: &CertificateDer<'_>) -> bool {
        let name = ServerName::try_from("pacsync-server.invalid").expect("name");
        verifier
            .verify_server_cert(shown, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn pinned_takes_only_its_certificate_and_any_takes_all() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pinned = WithoutCa::pinned(cert(b"configured"), provider.clone());
        assert!(check(&pinned, &cert(b"configured")));
        assert!(!check(&pinned, &cert(b"another")));
        let any = WithoutCa::any(provider);
        assert!(check(&any, &cert(b"another")));
    }
}
