//! GCS uploads through the JSON API's resumable protocol: one session per file, chunks of a
//! multiple of 256 KiB sent in order, each retried with backoff from the offset the server has
//! persisted. Google recommends it for large files; unlike the XML multipart upload that
//! `object_store` uses, fake-gcs-server implements it too. Authentication reuses
//! `object_store`'s credential provider, so both paths share one set of credentials.

use std::path::Path;

use bytes::Bytes;
use object_store::gcp::GcpCredentialProvider;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, LOCATION, RANGE};
use reqwest::StatusCode;

use super::error::{CauseKind, RemoteError};
use super::local::{open_source, read_part};
use super::types::{Backoff, Fault, Tuning};
use crate::config::StoreKind;

/// GCS requires every chunk but the last to be a multiple of this.
const CHUNK_GRANULE: usize = 256 * 1024;

/// How requests are authorized.
pub(crate) enum GcsAuth {
    /// No `Authorization` header (an emulator).
    Anonymous,
    /// Bearer tokens from object_store's provider (service account, user, metadata server).
    Provider(GcpCredentialProvider),
}

/// Resumable uploads into one bucket.
pub(crate) struct ResumableUploads {
    client: reqwest::Client,
    base_url: String,
    bucket: String,
    auth: GcsAuth,
    tuning: Tuning,
}

/// What the server said about a chunk.
enum ChunkReply {
    /// The object is complete.
    Done,
    /// The server holds this many bytes.
    Persisted(u64),
}

impl ResumableUploads {
    pub(crate) fn new(
        base_url: &str,
        bucket: &str,
        auth: GcsAuth,
        tuning: &Tuning,
    ) -> Result<ResumableUploads, RemoteError> {
        let client = reqwest::Client::builder()
            // 308 is "resume incomplete" here, never a redirect to follow.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(tuning.connect_timeout)
            .timeout(tuning.request_timeout)
            .build()
            .map_err(|e| RemoteError::Settings {
                store: StoreKind::Gcs,
                problem: format!("cannot set up the HTTP client: {e}"),
                hint: None,
            })?;
        Ok(ResumableUploads {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            auth,
            tuning: tuning.clone(),
        })
    }

    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Fault> {
        match &self.auth {
            GcsAuth::Anonymous => Ok(request),
            GcsAuth::Provider(provider) => {
                let credential = provider
                    .get_credential()
                    .await
                    .map_err(|e| Fault::new(CauseKind::Refused, format!("no GCS token: {e}")))?;
                Ok(request.header(AUTHORIZATION, format!("Bearer {}", credential.bearer)))
            }
        }
    }

    /// Uploads `local` as object `name`.
    pub(crate) async fn upload(&self, local: &Path, name: &str) -> Result<u64, Fault> {
        let (mut file, size) = open_source(local).await?;
        let session = self.start(name).await?;
        let chunk_size = (self.tuning.part_size / CHUNK_GRANULE).max(1) * CHUNK_GRANULE;
        let mut offset = 0u64;
        loop {
            let chunk = read_part(&mut file, chunk_size, local).await?;
            let end = offset + chunk.len() as u64;
            if chunk.len() < chunk_size && end != size {
                return Err(Fault::new(
                    CauseKind::LocalFile,
                    format!("{} changed size during the upload", local.display()),
                ));
            }
            let last = end == size;
            self.send_chunk(&session, offset, chunk, size, last).await?;
            offset = end;
            if last {
                return Ok(size);
            }
        }
    }

    /// Opens a session; its URL comes back in `Location`.
    async fn start(&self, name: &str) -> Result<String, Fault> {
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&name={}",
            self.base_url,
            encode(&self.bucket),
            encode(name)
        );
        let mut backoff = Backoff::new(&self.tuning);
        loop {
            let request = self.client.post(&url).header(CONTENT_LENGTH, 0);
            let attempt = match self.authorize(request).await?.send().await {
                Ok(response) if response.status().is_success() => {
                    match response
                        .headers()
                        .get(LOCATION)
                        .and_then(|v| v.to_str().ok())
                    {
                        Some(location) => return Ok(location.to_string()),
                        None => {
                            return Err(Fault::new(
                                CauseKind::Server,
                                "the server opened no upload session (no Location header)",
                            ))
                        }
                    }
                }
                Ok(response) => status_fault(response).await,
                Err(e) => transport_fault(e),
            };
            if !attempt.transient || !backoff.wait().await {
                return Err(attempt.fault);
            }
        }
    }

    /// Sends `chunk` (bytes `offset..`) and resends what the server did not persist, with
    /// backoff between failed attempts.
    async fn send_chunk(
        &self,
        session: &str,
        offset: u64,
        chunk: Bytes,
        total: u64,
        last: bool,
    ) -> Result<(), Fault> {
        let end = offset + chunk.len() as u64;
        let mut from = offset;
        let mut backoff = Backoff::new(&self.tuning);
        loop {
            let body = chunk.slice((from - offset) as usize..);
            let range = if body.is_empty() {
                format!("bytes */{total}")
            } else {
                format!("bytes {from}-{}/{total}", end - 1)
            };
            let request = self
                .client
                .put(session)
                .header(CONTENT_RANGE, range)
                .header(CONTENT_LENGTH, body.len())
                .body(body);
            let failure = match self.authorize(request).await?.send().await {
                Ok(response) => match chunk_reply(response).await {
                    Ok(ChunkReply::Done) if last => return Ok(()),
                    Ok(ChunkReply::Done) => {
                        return Err(Fault::new(
                            CauseKind::Server,
                            format!("the server ended the upload early, at byte {end} of {total}"),
                        ))
                    }
                    Ok(ChunkReply::Persisted(n)) if n >= end && !last => return Ok(()),
                    Ok(ChunkReply::Persisted(n)) if n >= from && n < end => {
                        // Partly stored: send the rest straight away.
                        from = n;
                        continue;
                    }
                    Ok(ChunkReply::Persisted(n)) => Failed {
                        fault: Fault::new(
                            CauseKind::Server,
                            format!("the server holds {n} bytes, expected {end}"),
                        ),
                        transient: false,
                    },
                    Err(failed) => failed,
                },
                Err(e) => transport_fault(e),
            };
            if !failure.transient || !backoff.wait().await {
                return Err(failure.fault);
            }
            // Ask what survived before resending.
            from = match self.persisted(session, total).await {
                Ok(ChunkReply::Done) if last => return Ok(()),
                Ok(ChunkReply::Persisted(n)) if (offset..=end).contains(&n) => n,
                _ => offset,
            };
        }
    }

    /// The status query: an empty PUT with `bytes */total`.
    async fn persisted(&self, session: &str, total: u64) -> Result<ChunkReply, Failed> {
        let request = self
            .client
            .put(session)
            .header(CONTENT_RANGE, format!("bytes */{total}"))
            .header(CONTENT_LENGTH, 0);
        let request = self.authorize(request).await.map_err(|fault| Failed {
            fault,
            transient: false,
        })?;
        match request.send().await {
            Ok(response) => chunk_reply(response).await,
            Err(e) => Err(transport_fault(e)),
        }
    }
}

/// A failed attempt, and whether another one may succeed.
struct Failed {
    fault: Fault,
    transient: bool,
}

/// 200/201: complete; 308: incomplete, `Range: bytes=0-N` says what is stored.
async fn chunk_reply(response: reqwest::Response) -> Result<ChunkReply, Failed> {
    match response.status() {
        StatusCode::OK | StatusCode::CREATED => Ok(ChunkReply::Done),
        StatusCode::PERMANENT_REDIRECT => {
            let stored = response
                .headers()
                .get(RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.strip_prefix("bytes=0-"))
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(0, |last| last + 1);
            Ok(ChunkReply::Persisted(stored))
        }
        _ => Err(status_fault(response).await),
    }
}

/// An error status: refusals and missing sessions are final; throttling, timeouts and server
/// errors are worth another try.
async fn status_fault(response: reqwest::Response) -> Failed {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let kind = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CauseKind::Refused,
        StatusCode::NOT_FOUND => CauseKind::NotFound,
        _ => CauseKind::Server,
    };
    let transient = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    let body: String = body.chars().take(300).collect();
    Failed {
        fault: Fault::new(
            kind,
            format!("the server answered {status}: {}", body.trim()),
        ),
        transient,
    }
}

/// A request that got no answer; always worth another try.
fn transport_fault(e: reqwest::Error) -> Failed {
    // Without the URL: a session URL is a bearer capability for the upload.
    let e = e.without_url();
    let mut text = format!("no answer, or the connection broke ({e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.push(')');
    Failed {
        fault: Fault::new(CauseKind::Unreachable, text),
        transient: true,
    }
}
