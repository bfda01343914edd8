//! What went wrong in a TLS handshake, in terms a peerwire user acts on. Pure.

use std::io;

use rustls::{AlertDescription, CertificateError};

use crate::HandshakeError;

/// The kind of a TLS failure, from this side's checks or from the peer's alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailure {
    /// A certificate was required and none was presented.
    NoCertificate,
    /// The certificate is not signed by the cluster's CA.
    UnknownIssuer,
    /// The certificate has expired or is not yet valid.
    Expired,
    /// The certificate does not name the node id its holder claims.
    WrongIdentity,
    /// One side spoke TLS and the other did not (TLS configured on one side only).
    NotTls,
    /// Another failure of the TLS handshake.
    Handshake,
}

impl TlsFailure {
    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::UnknownIssuer => "unknown_issuer",
            Self::Expired => "expired",
            Self::WrongIdentity => "wrong_identity",
            Self::NotTls => "not_tls",
            Self::Handshake => "handshake",
        }
    }
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoCertificate => "no certificate",
            Self::UnknownIssuer => "certificate not signed by the cluster CA",
            Self::Expired => "certificate expired or not yet valid",
            Self::WrongIdentity => "certificate names another node",
            Self::NotTls => "peer does not speak TLS",
            Self::Handshake => "handshake failed",
        })
    }
}

/// Classifies a rustls error: our own verification failed, or the peer's alert says why it
/// refused us.
pub(crate) fn classify(e: &rustls::Error) -> HandshakeError {
    let (failure, refused_by_peer) = match e {
        rustls::Error::NoCertificatesPresented => (TlsFailure::NoCertificate, false),
        rustls::Error::InvalidCertificate(c) => (certificate_failure(c), false),
        rustls::Error::AlertReceived(alert) => (alert_failure(*alert), true),
        rustls::Error::InvalidMessage(_) => (TlsFailure::NotTls, false),
        _ => (TlsFailure::Handshake, false),
    };
    let message = match failure {
        TlsFailure::NotTls => format!("the peer's bytes are not TLS ({e})"),
        TlsFailure::Handshake => e.to_string(),
        _ if refused_by_peer => format!("the peer refused our certificate: {e}"),
        _ => format!("the peer's certificate was refused: {e}"),
    };
    HandshakeError::Tls { failure, message }
}

fn certificate_failure(e: &CertificateError) -> TlsFailure {
    match e {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            TlsFailure::UnknownIssuer
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            TlsFailure::WrongIdentity
        }
        _ => TlsFailure::Handshake,
    }
}

fn alert_failure(alert: AlertDescription) -> TlsFailure {
    match alert {
        AlertDescription::CertificateRequired => TlsFailure::NoCertificate,
        AlertDescription::UnknownCA => TlsFailure::UnknownIssuer,
        AlertDescription::CertificateExpired => TlsFailure::Expired,
        _ => TlsFailure::Handshake,
    }
}

/// The TLS failure inside an IO error, if it is one (tokio-rustls wraps rustls errors).
pub(crate) fn classify_io(e: &io::Error) -> Option<HandshakeError> {
    let inner = e.get_ref()?;
    inner.downcast_ref::<rustls::Error>().map(classify)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(e: &rustls::Error) -> TlsFailure {
        match classify(e) {
            HandshakeError::Tls { failure, .. } => failure,
            other => panic!("not a TLS error: {other:?}"),
        }
    }

    #[test]
    fn rustls_errors_map_to_failures() {
        let cases = [
            (
                rustls::Error::NoCertificatesPresented,
                TlsFailure::NoCertificate,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                TlsFailure::NoCertificate,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                TlsFailure::UnknownIssuer,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                TlsFailure::UnknownIssuer,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                TlsFailure::Expired,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateExpired),
                TlsFailure::Expired,
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                TlsFailure::NotTls,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::HandshakeFailure),
                TlsFailure::Handshake,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(failure(&e), want, "{e:?}");
        }
    }

    #[test]
    fn io_errors_carrying_rustls_errors_are_classified() {
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
        );
        assert!(matches!(
            classify_io(&wrapped),
            Some(HandshakeError::Tls {
                failure: TlsFailure::UnknownIssuer,
                ..
            })
        ));
        assert!(classify_io(&io::Error::from(io::ErrorKind::ConnectionReset)).is_none());
    }
}
