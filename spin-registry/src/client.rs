//! A client of the OCI distribution API: manifests and blobs, with the
//! `WWW-Authenticate` challenge (basic or bearer token), retries with
//! backoff on 429/5xx and transport errors, and resumption of interrupted
//! blob downloads with `Range`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use spin_image::Digest;
use spin_image::oci::media_type;
use tokio::io::AsyncWriteExt;

use crate::reference::Reference;
use crate::{Credentials, Error, PullEvent};

/// Retry policy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retry {
    pub attempts: u32,
    pub base_delay: Duration,
}

impl Retry {
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.base_delay * 2u32.saturating_pow(attempt.min(10));
        retry_after
            .map(|r| r.min(Duration::from_secs(30)))
            .unwrap_or(backoff)
    }
}

/// A session with one registry repository.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    repo: String,
    creds: Option<Credentials>,
    retry: Retry,
    /// The Authorization header that last worked.
    auth: Mutex<Option<HeaderValue>>,
}

/// A fetched manifest or index.
pub(crate) struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

fn transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Parses `Bearer realm="…",service="…",scope="…"` (or `Basic realm=…`).
fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, remaining) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(k, v);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_ascii_lowercase(), params)
}

impl Client {
    pub(crate) fn new(
        http: reqwest::Client,
        reference: &Reference,
        insecure: bool,
        creds: Option<Credentials>,
        retry: Retry,
    ) -> Result<Client, Error> {
        if insecure && !reference.is_loopback() {
            return Err(Error::InsecureNotLoopback(reference.registry.clone()));
        }
        let scheme = if insecure { "http" } else { "https" };
        Ok(Client {
            http,
            base: format!(
                "{scheme}://{}/v2/{}",
                reference.api_host(),
                reference.repository
            ),
            repo: reference.repository.clone(),
            creds,
            retry,
            auth: Mutex::new(None),
        })
    }

    /// Sends a request built by `make`, answering auth challenges and
    /// retrying transient failures. Returns a response with a success status.
    async fn send(
        &self,
        what: &str,
        make: &(dyn Fn() -> RequestBuilder + Send + Sync),
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<Response, Error> {
        let mut attempt = 0;
        let mut authenticated = false;
        loop {
            let mut rb = make();
            if let Some(h) = self.auth.lock().expect("auth lock").clone() {
                rb = rb.header(AUTHORIZATION, h);
            }
            let res = rb.send().await;
            let (reason, retry_after) = match res {
                Err(e) => (format!("{e}"), None),
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        return Ok(resp);
                    }
                    if status == StatusCode::UNAUTHORIZED {
                        if authenticated {
                            return Err(Error::Unauthorized(format!(
                                "{what}: the registry refused the credentials"
                            )));
                        }
                        let challenge = resp
                            .headers()
                            .get(WWW_AUTHENTICATE)
                            .and_then(|h| h.to_str().ok())
                            .map(str::to_string);
                        let Some(challenge) = challenge else {
                            return Err(Error::Unauthorized(format!(
                                "{what}: 401 without a WWW-Authenticate challenge"
                            )));
                        };
                        self.authenticate(&challenge).await?;
                        authenticated = true;
                        continue;
                    }
                    if status == StatusCode::FORBIDDEN {
                        return Err(Error::Denied(format!("{what}: access denied (403)")));
                    }
                    if status == StatusCode::NOT_FOUND {
                        return Err(Error::NotFound(what.to_string()));
                    }
                    if !transient(status) {
                        let body = resp.text().await.unwrap_or_default();
                        return Err(Error::Status {
                            what: what.to_string(),
                            status: status.as_u16(),
                            body: body.chars().take(300).collect(),
                        });
                    }
                    let ra = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|h| h.to_str().ok())
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    if attempt >= self.retry.attempts {
                        return Err(Error::Status {
                            what: what.to_string(),
                            status: status.as_u16(),
                            body: format!("still failing after {attempt} retries"),
                        });
                    }
                    (format!("HTTP {status}"), ra)
                }
            };
            if attempt >= self.retry.attempts {
                return Err(Error::Transport(format!(
                    "{what}: {reason} (after {attempt} retries)"
                )));
            }
            let delay = self.retry.delay(attempt, retry_after);
            attempt += 1;
            tracing::debug!(what, %reason, attempt, ?delay, "retrying");
            progress(PullEvent::Retrying {
                what: what.to_string(),
                attempt,
                reason,
            });
            tokio::time::sleep(delay).await;
        }
    }

    /// Answers a `WWW-Authenticate` challenge, storing the header to send.
    async fn authenticate(&self, challenge: &str) -> Result<(), Error> {
        let (scheme, params) = parse_challenge(challenge);
        let header = match scheme.as_str() {
            "basic" => {
                let c = self.creds.as_ref().ok_or_else(|| {
                    Error::Unauthorized(format!(
                        "{}: the registry asks for a user name and password",
                        self.repo
                    ))
                })?;
                basic(c)
            }
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| Error::Unauthorized("bearer challenge without realm".into()))?;
                let mut url = reqwest::Url::parse(realm)
                    .map_err(|e| Error::Unauthorized(format!("bad token realm {realm:?}: {e}")))?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = params.get("service") {
                        q.append_pair("service", s);
                    }
                    let scope = params
                        .get("scope")
                        .cloned()
                        .unwrap_or_else(|| format!("repository:{}:pull", self.repo));
                    q.append_pair("scope", &scope);
                }
                let mut rb = self.http.get(url.clone());
                if let Some(c) = &self.creds {
                    rb = rb.header(AUTHORIZATION, basic(c));
                }
                let resp = rb
                    .send()
                    .await
                    .map_err(|e| Error::Transport(format!("token service {url}: {e}")))?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(Error::Unauthorized(format!(
                        "token service refused ({status})"
                    )));
                }
                if !status.is_success() {
                    return Err(Error::Status {
                        what: "token service".into(),
                        status: status.as_u16(),
                        body: String::new(),
                    });
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| Error::Transport(format!("token service: {e}")))?;
                let t: Token = serde_json::from_slice(&body)
                    .map_err(|e| Error::Unauthorized(format!("bad token response: {e}")))?;
                let tok = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| Error::Unauthorized("token response without a token".into()))?;
                HeaderValue::from_str(&format!("Bearer {tok}"))
                    .map_err(|_| Error::Unauthorized("token is not a valid header".into()))?
            }
            other => {
                return Err(Error::Unauthorized(format!(
                    "unsupported auth scheme {other:?}"
                )));
            }
        };
        *self.auth.lock().expect("auth lock") = Some(header);
        Ok(())
    }

    /// Fetches a manifest or index by tag or digest.
    pub(crate) async fn manifest(
        &self,
        reference: &str,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<FetchedManifest, Error> {
        let url = format!("{}/manifests/{reference}", self.base);
        let accept = [
            media_type::OCI_INDEX,
            media_type::OCI_MANIFEST,
            media_type::DOCKER_MANIFEST_LIST,
            media_type::DOCKER_MANIFEST,
        ]
        .join(", ");
        let what = format!("manifest {}:{reference}", self.repo);
        let resp = self
            .send(
                &what,
                &|| self.http.request(Method::GET, &url).header(ACCEPT, &accept),
                progress,
            )
            .await?;
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::Transport(format!("{what}: {e}")))?
            .to_vec();
        if bytes.len() > 4 << 20 {
            return Err(Error::Store(format!("{what}: manifest larger than 4 MiB")));
        }
        let digest = Digest::of(&bytes);
        if let Ok(expected) = reference.parse::<Digest>()
            && expected != digest
        {
            return Err(Error::DigestMismatch {
                expected,
                actual: digest,
            });
        }
        let body_type = spin_image::oci::sniff_media_type(&bytes);
        let media_type = match (body_type, ct) {
            (Some(b), _) => b,
            (None, Some(c)) if !c.is_empty() && c != "application/json" => c,
            _ => {
                return Err(Error::UnknownMediaType(format!(
                    "{what}: cannot tell the document type"
                )));
            }
        };
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Downloads a small blob into memory, verifying it.
    pub(crate) async fn blob_bytes(
        &self,
        digest: &Digest,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<Vec<u8>, Error> {
        let url = format!("{}/blobs/{digest}", self.base);
        let what = format!("blob {digest}");
        let resp = self.send(&what, &|| self.http.get(&url), progress).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::Transport(format!("{what}: {e}")))?
            .to_vec();
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Downloads a blob into `dest` (a temporary file), hashing while
    /// streaming; interrupted transfers resume with `Range`.
    pub(crate) async fn blob_to_file(
        &self,
        digest: &Digest,
        size: u64,
        dest: &Path,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<(), Error> {
        let url = format!("{}/blobs/{digest}", self.base);
        let what = format!("blob {digest}");
        let mut file = tokio::fs::File::create(dest).await?;
        let mut hasher = Sha256::new();
        let mut have: u64 = 0;
        let mut interruptions = 0;
        loop {
            let from = have;
            let resp = self
                .send(
                    &what,
                    &|| {
                        let rb = self.http.get(&url);
                        if from > 0 {
                            rb.header(RANGE, format!("bytes={from}-"))
                        } else {
                            rb
                        }
                    },
                    progress,
                )
                .await?;
            if from > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
                // The server ignored the range: start over.
                tracing::debug!(%digest, "range not honoured, restarting");
                file.set_len(0).await?;
                file = tokio::fs::File::create(dest).await?;
                hasher = Sha256::new();
                have = 0;
            }
            let mut stream = resp.bytes_stream();
            let mut failed = None;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => {
                        have += c.len() as u64;
                        if have > size {
                            return Err(Error::SizeMismatch {
                                what: what.clone(),
                                expected: size,
                            });
                        }
                        hasher.update(&c);
                        file.write_all(&c).await?;
                        progress(PullEvent::Layer {
                            digest: digest.clone(),
                            downloaded: have,
                            total: size,
                        });
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            if failed.is_none() && have == size {
                break;
            }
            let reason =
                failed.unwrap_or_else(|| format!("connection closed after {have} of {size} bytes"));
            if interruptions >= self.retry.attempts {
                return Err(Error::Transport(format!(
                    "{what}: {reason} (after {interruptions} resumptions)"
                )));
            }
            interruptions += 1;
            progress(PullEvent::Retrying {
                what: what.clone(),
                attempt: interruptions,
                reason: format!("{reason}; resuming at byte {have}"),
            });
            tokio::time::sleep(self.retry.delay(interruptions - 1, None)).await;
        }
        file.flush().await?;
        file.sync_all().await?;
        let actual = Digest::from_sha256(hasher.finalize().into());
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(())
    }
}

fn basic(c: &Credentials) -> HeaderValue {
    let raw =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
    let mut h = HeaderValue::from_str(&format!("Basic {raw}")).expect("base64 is a valid header");
    h.set_sensitive(true);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "basic");
        assert_eq!(p["realm"], "Registry Realm");
    }
}
