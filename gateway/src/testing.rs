//! What stands in for the load balancer's sign-in, for the tests and the local stack:
//! an ES256 key that mints tokens exactly as an ALB does (padded base64url segments,
//! the signature over the padded `header.payload`), and a small HTTP server of public
//! keys laid out as the ALB's key endpoint (`{url}/{kid}`, a PEM). Never used by the
//! gateway itself.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long the ALB's tokens live, roughly: the header's `exp` is two minutes out.
pub const TOKEN_TTL_S: u64 = 120;

/// A load balancer's signing key.
pub struct AlbSigner {
    kid: String,
    key: EncodingKey,
    public_pem: String,
}

impl AlbSigner {
    /// A new P-256 key named `kid`.
    pub fn generate(kid: &str) -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("a P-256 key is generated");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("a generated key parses");
        let spki = pair
            .public_key()
            .as_der()
            .expect("a public key has a DER form");
        Self {
            kid: kid.to_owned(),
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as the ALB's key endpoint serves it.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The token an ALB named `alb_arn` sends for the user `sub`, valid for
    /// [`TOKEN_TTL_S`].
    pub fn token(&self, alb_arn: &str, sub: &str) -> String {
        let exp = now() + TOKEN_TTL_S;
        self.sign(&self.header(alb_arn, exp), &claims(sub, exp))
    }

    /// The header an ALB writes.
    pub fn header(&self, alb_arn: &str, exp: u64) -> Value {
        json!({
            "typ": "JWT",
            "kid": self.kid,
            "alg": "ES256",
            "iss": "https://idp.example.com",
            "client": "gateway-client",
            "signer": alb_arn,
            "exp": exp,
        })
    }

    /// Signs any header and payload the way the ALB does: padded segments, signed as
    /// sent. The header's `alg` is not looked at: the signature is always ES256.
    pub fn sign(&self, header: &Value, payload: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE.encode(header.to_string()),
            URL_SAFE.encode(payload.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &self.key, Algorithm::ES256)
                .expect("ES256 signs");
        format!("{signing_input}.{}", padded(&signature))
    }
}

impl AlbSigner {
    /// Signs as RFC 7515 says and the ALB does not: unpadded segments.
    pub fn sign_unpadded(&self, header: &Value, payload: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &self.key, Algorithm::ES256)
                .expect("ES256 signs");
        format!("{signing_input}.{signature}")
    }
}

/// The user claims an ALB passes on, for `sub`, expiring at `exp`.
pub fn claims(sub: &str, exp: u64) -> Value {
    json!({
        "sub": sub,
        "email": format!("{sub}@example.com"),
        "exp": exp,
        "iss": "https://idp.example.com",
    })
}

fn padded(unpadded_b64: &str) -> String {
    let pad = (4 - unpadded_b64.len() % 4) % 4;
    format!("{unpadded_b64}{}", "=".repeat(pad))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Serves public keys at `/{kid}` on 127.0.0.1, counting the requests for each; stops
/// when dropped.
pub struct KeyServer {
    url: String,
    keys: Arc<Mutex<HashMap<String, String>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: JoinHandle<()>,
}

impl KeyServer {
    pub async fn start(signers: &[&AlbSigner]) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let keys: Arc<Mutex<HashMap<String, String>>> = Arc::new(Mutex::new(
            signers
                .iter()
                .map(|s| (s.kid().to_owned(), s.public_pem().to_owned()))
                .collect(),
        ));
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let task = tokio::spawn({
            let (keys, hits) = (Arc::clone(&keys), Arc::clone(&hits));
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (keys, hits) = (Arc::clone(&keys), Arc::clone(&hits));
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let kid = req.uri().path().trim_start_matches('/').to_owned();
                        *hits.lock().unwrap().entry(kid.clone()).or_default() += 1;
                        let pem = keys.lock().unwrap().get(&kid).cloned();
                        let response = match pem {
                            Some(pem) => Response::new(Full::new(Bytes::from(pem))),
                            None => {
                                let mut response = Response::new(Full::new(Bytes::new()));
                                *response.status_mut() = StatusCode::NOT_FOUND;
                                response
                            }
                        };
                        async move { Ok::<_, Infallible>(response) }
                    });
                    tokio::spawn(
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                    );
                }
            }
        });
        Ok(Self {
            url,
            keys,
            hits,
            task,
        })
    }

    /// What to set `ALB_PUBLIC_KEYS_URL` to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves one more key.
    pub fn add(&self, signer: &AlbSigner) {
        self.keys
            .lock()
            .unwrap()
            .insert(signer.kid().to_owned(), signer.public_pem().to_owned());
    }

    /// How many times `kid` was asked for.
    pub fn hits(&self, kid: &str) -> usize {
        self.hits.lock().unwrap().get(kid).copied().unwrap_or(0)
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_padded_segments_like_the_albs() {
        // Lengths chosen so that every segment needs padding at some point.
        let signer = AlbSigner::generate("kid-1");
        let mut padded_segments = 0;
        for sub in ["a", "ab", "abc", "abcd"] {
            let token = signer.token("arn:aws:elasticloadbalancing:x", sub);
            let segments: Vec<&str> = token.split('.').collect();
            assert_eq!(segments.len(), 3);
            for segment in &segments {
                assert_eq!(segment.len() % 4, 0, "{segment}");
            }
            padded_segments += segments.iter().filter(|s| s.ends_with('=')).count();
        }
        assert!(padded_segments > 0);
        assert!(signer
            .public_pem()
            .starts_with("-----BEGIN PUBLIC KEY-----\n"));
    }
}
