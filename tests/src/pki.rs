//! Certificates made for a test: a CA, a server certificate and client certificates, written
//! as PEM files. Nothing of it is committed.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};

/// A CA (`ca`), a server certificate (`server`) for `localhost`, 127.0.0.1 and `canaryctl`, and
/// client certificates: `client` from the CA, `stranger` from another CA. Each as `NAME.pem` and
/// `NAME-key.pem` in the directory.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let ca = authority(dir, "ca");
        let other = authority(dir, "other-ca");
        leaf(dir, "server", &ca, &["localhost", "127.0.0.1", "canaryctl"]);
        leaf(dir, "client", &ca, &["edge.envoy.test"]);
        leaf(dir, "stranger", &other, &["edge.envoy.test"]);
        Pki {
            dir: dir.to_owned(),
        }
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-key.pem"))
    }

    pub fn read(&self, path: PathBuf) -> Vec<u8> {
        std::fs::read(path).expect("read a PEM file")
    }
}

fn authority(dir: &Path, name: &str) -> Issuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Names of their own: a leaf whose subject equals its issuer's reads as self-signed.
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("a key");
    let cert = params.self_signed(&key).expect("a CA certificate");
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write");
    Issuer::new(params, key)
}

fn leaf(dir: &Path, name: &str, issuer: &Issuer<'static, KeyPair>, names: &[&str]) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("leaf parameters");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("a key");
    let cert = params.signed_by(&key, issuer).expect("a leaf certificate");
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write");
    std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).expect("write");
}
