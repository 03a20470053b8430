//! TLS for `https://` registries: the certificate authorities to trust (a PEM file, default
//! the Mozilla roots built into the client) and the client certificate for mutual TLS, from the
//! target's `schema_registry_ca_location`, `schema_registry_certificate_location` and
//! `schema_registry_key_location`.

use std::path::{Path, PathBuf};

use ureq::tls::{parse_pem, Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::RegistryError;
use crate::project::target::RegistryAccess;

/// The TLS settings of a registry client and what they trust, for error messages.
#[derive(Clone, Default)]
pub(super) struct RegistryTls {
    pub(super) config: TlsConfig,
    /// The CA file, when the target names one.
    pub(super) ca_location: Option<PathBuf>,
}

impl RegistryTls {
    /// The settings for `access`; `https` says whether the registry's URL is `https://`.
    pub(super) fn new(access: &RegistryAccess, https: bool) -> Result<RegistryTls, RegistryError> {
        let files = [
            ("schema_registry_ca_location", &access.ca_location),
            ("schema_registry_certificate_location", &access.certificate_location),
            ("schema_registry_key_location", &access.key_location),
        ];
        if !https {
            if let Some((field, _)) = files.iter().find(|(_, p)| p.is_some()) {
                return Err(RegistryError::Other(format!(
                    "`{field}` is set, but the schema registry URL is not https://: TLS files are for https:// registries"
                )));
            }
            return Ok(RegistryTls::default());
        }
        let mut builder = TlsConfig::builder();
        if let Some(path) = &access.ca_location {
            let certs = certificates(path, "schema_registry_ca_location")?;
            builder = builder.root_certs(RootCerts::new_with_certs(&certs));
        }
        if let (Some(cert), Some(key)) = (&access.certificate_location, &access.key_location) {
            let chain = certificates(cert, "schema_registry_certificate_location")?;
            let key = private_key(key)?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        Ok(RegistryTls { config: builder.build(), ca_location: access.ca_location.clone() })
    }

    /// An untrusted certificate in words a user can act on, naming what is trusted; None for
    /// other failures.
    pub(super) fn untrusted(&self, detail: &str) -> Option<String> {
        let untrusted = ["UnknownIssuer", "invalid peer certificate", "certificate verify failed"];
        if !untrusted.iter().any(|u| detail.contains(u)) {
            return None;
        }
        Some(match &self.ca_location {
            Some(ca) => format!(
                "TLS: the registry's certificate is not signed by a CA in {} (schema_registry_ca_location): {detail}",
                ca.display()
            ),
            None => format!(
                "TLS: the registry's certificate is not signed by a publicly trusted CA ({detail}): \
                 set schema_registry_ca_location to the PEM file of the CA that signed it"
            ),
        })
    }
}

fn read(path: &Path, field: &str) -> Result<Vec<u8>, RegistryError> {
    std::fs::read(path).map_err(|e| RegistryError::Other(format!("{field}: cannot read {}: {e}", path.display())))
}

/// Every certificate of a PEM file; at least one.
fn certificates(path: &Path, field: &str) -> Result<Vec<Certificate<'static>>, RegistryError> {
    let pem = read(path, field)?;
    let mut certs = Vec::new();
    for item in parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(RegistryError::Other(format!("{field}: {} is not a valid PEM file: {e}", path.display())))
            }
        }
    }
    if certs.is_empty() {
        return Err(RegistryError::Other(format!(
            "{field}: no certificate (-----BEGIN CERTIFICATE-----) in {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKey<'static>, RegistryError> {
    const FIELD: &str = "schema_registry_key_location";
    let pem = read(path, FIELD)?;
    for item in parse_pem(&pem) {
        match item {
            Ok(PemItem::PrivateKey(k)) => return Ok(k),
            Ok(_) => {}
            Err(e) => {
                return Err(RegistryError::Other(format!("{FIELD}: {} is not a valid PEM file: {e}", path.display())))
            }
        }
    }
    Err(RegistryError::Other(format!(
        "{FIELD}: no unencrypted private key (-----BEGIN PRIVATE KEY-----) in {}",
        path.display()
    )))
}
