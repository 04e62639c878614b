//! S3, B2 (its S3-compatible API), Azure Blob and GCS through `object_store`: building each
//! client from the pg_back settings, multipart uploads with bounded memory (at most
//! `part_concurrency` parts in flight, each retried with backoff by object_store), listing by
//! string prefix, downloads through a temporary file. GCS uploads go through [`super::gcs`].

use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt as _;
use object_store::gcp::GcpCredential;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt as _, RetryConfig,
    StaticCredentialProvider, WriteMultipart,
};

use super::credentials::{self, AzureAuth, Environment};
use super::error::{CauseKind, Redactor, RemoteError};
use super::gcs::{GcsAuth, ResumableUploads};
use super::local::{open_source, read_part, PartialFile};
use super::types::{Fault, RemoteEntry, Tuning};
use crate::config::{RemoteSettings, StoreKind};
use crate::secret::Secret;

/// One object-store bucket or container.
pub(crate) struct ObjectBackend {
    kind: StoreKind,
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket`, `azure://account/container`, ... for messages.
    base: String,
    /// The endpoint, for "cannot reach" hints.
    endpoint: String,
    /// GCS only: uploads go through the resumable protocol.
    gcs: Option<ResumableUploads>,
    /// Which credentials were used (`access key AKID... from s3_profile`), for refusals.
    credentials_used: Option<String>,
    tuning: Tuning,
}

fn missing(kind: StoreKind, key: &str) -> RemoteError {
    RemoteError::Settings {
        store: kind,
        problem: format!("{key} is not set"),
        hint: Some(format!(
            "set {key} in the configuration or --{}",
            key.replace('_', "-")
        )),
    }
}

fn retry_config(tuning: &Tuning) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: tuning.initial_backoff,
            max_backoff: tuning.max_backoff,
            base: 2.0,
        },
        max_retries: tuning.max_retries,
        retry_timeout: tuning.retry_timeout,
    }
}

fn client_options(tuning: &Tuning, url: &str) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(url.starts_with("http://"))
        .with_connect_timeout(tuning.connect_timeout)
        .with_timeout(tuning.request_timeout)
}

/// rustls needs a process-wide crypto provider for reqwest; ring is the one already in use.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `endpoint` with a scheme (`https://` unless `tls` is off); with `bucket`, as a virtual host.
fn s3_url(endpoint: &str, tls: bool, bucket: Option<&str>) -> String {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((scheme, rest)) => (scheme.to_string(), rest),
        None => ((if tls { "https" } else { "http" }).to_string(), endpoint),
    };
    let rest = rest.trim_end_matches('/');
    match bucket {
        Some(bucket) => format!("{scheme}://{bucket}.{rest}"),
        None => format!("{scheme}://{rest}"),
    }
}

struct S3Target<'a> {
    kind: StoreKind,
    bucket: &'a str,
    region: String,
    endpoint: String,
    force_path: bool,
    tls: bool,
}

/// The built store, or a settings error (scrubbed: a builder may quote what it was given).
fn built<T: ObjectStore>(
    kind: StoreKind,
    result: object_store::Result<T>,
    redactor: &Redactor,
) -> Result<Arc<dyn ObjectStore>, RemoteError> {
    match result {
        Ok(store) => Ok(Arc::new(store)),
        Err(e) => Err(RemoteError::Settings {
            store: kind,
            problem: redactor.scrub(&e.to_string()),
            hint: None,
        }),
    }
}

impl ObjectBackend {
    fn new(
        kind: StoreKind,
        store: Arc<dyn ObjectStore>,
        endpoint: String,
        tuning: &Tuning,
    ) -> ObjectBackend {
        ObjectBackend {
            kind,
            store,
            base: String::new(),
            endpoint,
            gcs: None,
            credentials_used: None,
            tuning: tuning.clone(),
        }
    }

    pub(crate) fn open(
        kind: StoreKind,
        settings: &RemoteSettings,
        tuning: &Tuning,
        env: &dyn Environment,
        redactor: &mut Redactor,
    ) -> Result<ObjectBackend, RemoteError> {
        install_crypto_provider();
        match kind {
            StoreKind::S3 => {
                let creds = credentials::aws_credentials(
                    &settings.s3_key_id,
                    settings.s3_secret.as_ref(),
                    &settings.s3_profile,
                    env,
                )?;
                let region = Some(settings.s3_region.clone())
                    .filter(|r| !r.is_empty())
                    .or(creds.region)
                    .unwrap_or_else(|| "us-east-1".into());
                let endpoint = if settings.s3_endpoint.is_empty() {
                    format!("s3.{region}.amazonaws.com")
                } else {
                    settings.s3_endpoint.clone()
                };
                let target = S3Target {
                    kind,
                    bucket: &settings.s3_bucket,
                    region,
                    endpoint,
                    force_path: settings.s3_force_path,
                    tls: settings.s3_tls,
                };
                Self::s3(target, creds.keys, env, tuning, redactor)
            }
            StoreKind::B2 => {
                let keys =
                    credentials::b2_keys(&settings.b2_key_id, settings.b2_app_key.as_ref(), env)?;
                let endpoint = match (settings.b2_endpoint.as_str(), settings.b2_region.as_str()) {
                    ("", "") => {
                        return Err(RemoteError::Settings {
                            store: kind,
                            problem: "neither b2_region nor b2_endpoint is set".into(),
                            hint: Some(
                                "set b2_region to the bucket's region (us-west-004, ...): \
                                 B2 is reached through its S3-compatible API"
                                    .into(),
                            ),
                        })
                    }
                    ("", region) => format!("s3.{region}.backblazeb2.com"),
                    (endpoint, _) => endpoint.to_string(),
                };
                let region = Some(settings.b2_region.clone())
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "us-east-1".into());
                let tuning = Tuning {
                    part_concurrency: (settings.b2_concurrent_connections as usize).max(1),
                    ..tuning.clone()
                };
                let target = S3Target {
                    kind,
                    bucket: &settings.b2_bucket,
                    region,
                    endpoint,
                    force_path: settings.b2_force_path,
                    tls: true,
                };
                Self::s3(target, Some(keys), env, &tuning, redactor)
            }
            StoreKind::Azure => Self::azure(settings, tuning, env, redactor),
            StoreKind::Gcs => Self::gcs(settings, tuning, env),
            StoreKind::None | StoreKind::Sftp => Err(RemoteError::Settings {
                store: kind,
                problem: "not an object store".into(),
                hint: None,
            }),
        }
    }

    fn s3(
        target: S3Target<'_>,
        keys: Option<credentials::AwsKeys>,
        env: &dyn Environment,
        tuning: &Tuning,
        redactor: &mut Redactor,
    ) -> Result<ObjectBackend, RemoteError> {
        let kind = target.kind;
        let bucket_key = if kind == StoreKind::B2 {
            "b2_bucket"
        } else {
            "s3_bucket"
        };
        if target.bucket.is_empty() {
            return Err(missing(kind, bucket_key));
        }
        let virtual_host = (!target.force_path).then_some(target.bucket);
        let url = s3_url(&target.endpoint, target.tls, virtual_host);
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(target.bucket)
            .with_region(&target.region)
            .with_endpoint(&url)
            .with_virtual_hosted_style_request(!target.force_path)
            .with_client_options(client_options(tuning, &url))
            .with_retry(retry_config(tuning));
        let credentials_used = keys
            .as_ref()
            .map(|k| format!("access key {} from {}", k.key_id, k.origin));
        match keys {
            Some(keys) => {
                redactor.add(&keys.secret);
                builder = builder
                    .with_access_key_id(&keys.key_id)
                    .with_secret_access_key(keys.secret.expose());
                if let Some(token) = keys.token {
                    redactor.add(&token);
                    builder = builder.with_token(token.expose());
                }
            }
            None => {
                // The instance's role: web identity (EKS), ECS task role, else EC2 metadata.
                for (var, key) in [
                    ("AWS_WEB_IDENTITY_TOKEN_FILE", "aws_web_identity_token_file"),
                    ("AWS_ROLE_ARN", "aws_role_arn"),
                    ("AWS_ROLE_SESSION_NAME", "aws_role_session_name"),
                    (
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                        "aws_container_credentials_relative_uri",
                    ),
                ] {
                    if let (Some(value), Ok(key)) = (env.var(var), key.parse()) {
                        builder = builder.with_config(key, value);
                    }
                }
            }
        }
        let store = built(kind, builder.build(), redactor)?;
        Ok(ObjectBackend {
            base: format!("{kind}://{}", target.bucket),
            credentials_used,
            ..ObjectBackend::new(kind, store, url, tuning)
        })
    }

    fn azure(
        settings: &RemoteSettings,
        tuning: &Tuning,
        env: &dyn Environment,
        redactor: &mut Redactor,
    ) -> Result<ObjectBackend, RemoteError> {
        let kind = StoreKind::Azure;
        if settings.azure_container.is_empty() {
            return Err(missing(kind, "azure_container"));
        }
        let (account, mut auth) =
            credentials::azure_auth(&settings.azure_account, settings.azure_key.as_ref(), env)?;
        let endpoint = settings.azure_endpoint.trim_end_matches('/');
        let (service, account) = if endpoint.contains("://") {
            // The account's URL (Azurite: http://127.0.0.1:10000/devstoreaccount1), perhaps with
            // a SAS token as its query.
            let (service, query) = match endpoint.split_once('?') {
                Some((service, query)) => (service.trim_end_matches('/'), Some(query)),
                None => (endpoint, None),
            };
            if let Some(query) = query.filter(|q| !q.is_empty()) {
                auth = Some(AzureAuth::Sas(Secret::new(query.to_string())));
            }
            let account = account.or_else(|| account_from_url(service));
            (service.to_string(), account)
        } else {
            let account = account.ok_or_else(|| RemoteError::Settings {
                store: kind,
                problem: "no storage account: azure_account and AZURE_STORAGE_ACCOUNT are unset"
                    .into(),
                hint: Some("set azure_account or AZURE_STORAGE_ACCOUNT".into()),
            })?;
            (format!("https://{account}.{endpoint}"), Some(account))
        };
        let account = account.ok_or_else(|| missing(kind, "azure_account"))?;
        let mut builder = object_store::azure::MicrosoftAzureBuilder::new()
            .with_account(&account)
            .with_container_name(&settings.azure_container)
            .with_endpoint(service.clone())
            .with_client_options(client_options(tuning, &service))
            .with_retry(retry_config(tuning));
        match auth {
            Some(AzureAuth::SharedKey(key)) => {
                redactor.add(&key);
                builder = builder.with_access_key(key.expose());
            }
            Some(AzureAuth::Sas(token)) => {
                redactor.add(&token);
                let pairs: Vec<(String, String)> =
                    url::form_urlencoded::parse(token.expose().as_bytes())
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                // The signature is the secret part; the rest (version, expiry) is not.
                for (_, value) in pairs.iter().filter(|(k, _)| k == "sig") {
                    redactor.add(&Secret::new(value.clone()));
                }
                builder = builder.with_sas_authorization(pairs);
            }
            // The machine's managed identity.
            None => {}
        }
        let store = built(kind, builder.build(), redactor)?;
        Ok(ObjectBackend {
            base: format!("azure://{account}/{}", settings.azure_container),
            ..ObjectBackend::new(kind, store, service, tuning)
        })
    }

    fn gcs(
        settings: &RemoteSettings,
        tuning: &Tuning,
        env: &dyn Environment,
    ) -> Result<ObjectBackend, RemoteError> {
        let kind = StoreKind::Gcs;
        if settings.gcs_bucket.is_empty() {
            return Err(missing(kind, "gcs_bucket"));
        }
        let base_url = gcs_base_url(&settings.gcs_endpoint);
        let mut builder = object_store::gcp::GoogleCloudStorageBuilder::new()
            .with_bucket_name(&settings.gcs_bucket)
            .with_client_options(client_options(tuning, &base_url))
            .with_retry(retry_config(tuning));
        if !settings.gcs_endpoint.is_empty() {
            builder = builder.with_base_url(&base_url);
        }
        let anonymous = match credentials::gcs_keyfile(&settings.gcs_keyfile, env) {
            Some(path) => {
                // A private key: the file must be readable by its owner only.
                let json = Secret::from_key_file(&path).map_err(|source| RemoteError::Secret {
                    store: kind,
                    source,
                })?;
                builder = if is_service_account(json.expose()) {
                    builder.with_service_account_key(json.expose())
                } else {
                    builder.with_application_credentials(path.to_string_lossy())
                };
                false
            }
            // An emulator needs no credentials; Google itself gets the machine's account.
            // A static empty token, not only skip_signature: object_store 0.14 still asks the
            // provider (by default the metadata server) before some requests, deletes among them.
            None if !settings.gcs_endpoint.is_empty() => {
                let none = GcpCredential {
                    bearer: String::new(),
                };
                builder = builder
                    .with_skip_signature(true)
                    .with_credentials(Arc::new(StaticCredentialProvider::new(none)));
                true
            }
            None => false,
        };
        let store = builder.build().map_err(|e| RemoteError::Settings {
            store: kind,
            problem: e.to_string(),
            hint: Some("check gcs_keyfile or GOOGLE_APPLICATION_CREDENTIALS".into()),
        })?;
        let auth = if anonymous {
            GcsAuth::Anonymous
        } else {
            GcsAuth::Provider(store.credentials().clone())
        };
        let uploads = ResumableUploads::new(&base_url, &settings.gcs_bucket, auth, tuning)?;
        Ok(ObjectBackend {
            base: format!("gcs://{}", settings.gcs_bucket),
            gcs: Some(uploads),
            ..ObjectBackend::new(kind, Arc::new(store), base_url, tuning)
        })
    }

    pub(crate) fn location(&self, full_key: &str) -> String {
        if full_key.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{full_key}", self.base)
        }
    }

    /// A fault from an object_store error, with a hint for refusals and unreachable servers.
    fn fault(&self, e: &object_store::Error) -> Fault {
        let kind = classify(e);
        let text = match kind {
            CauseKind::Unreachable => format!("no answer, or the connection broke ({e})"),
            CauseKind::Refused => format!("access refused ({e})"),
            CauseKind::NotFound => format!("no such object ({e})"),
            _ => e.to_string(),
        };
        self.hinted(Fault::new(kind, text))
    }

    /// Adds where to look for refusals and unreachable servers.
    fn hinted(&self, fault: Fault) -> Fault {
        match fault.kind {
            CauseKind::Refused => fault.with_hint(self.refused_hint()),
            CauseKind::Unreachable => {
                let hint = format!(
                    "check that {} is reachable from this machine",
                    self.endpoint
                );
                fault.with_hint(hint)
            }
            _ => fault,
        }
    }

    fn refused_hint(&self) -> String {
        match &self.credentials_used {
            Some(used) => format!("{} (this run used {used})", refused_hint(self.kind)),
            None => refused_hint(self.kind),
        }
    }

    pub(crate) async fn upload(&self, local: &Path, full_key: &str) -> Result<u64, Fault> {
        let path = ObjectPath::parse(full_key).map_err(|e| Fault::new(CauseKind::Server, e))?;
        if let Some(gcs) = &self.gcs {
            return gcs
                .upload(local, full_key)
                .await
                .map_err(|f| self.hinted(f));
        }
        let (mut file, size) = open_source(local).await?;
        let part_size = part_size_for(size, self.tuning.part_size);
        if size <= part_size as u64 {
            let bytes = read_part(&mut file, part_size, local).await?;
            let sent = bytes.len() as u64;
            self.store
                .put(&path, bytes.into())
                .await
                .map_err(|e| self.fault(&e))?;
            return Ok(sent);
        }
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| self.fault(&e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
        let mut sent = 0u64;
        loop {
            if let Err(e) = writer.wait_for_capacity(self.tuning.part_concurrency).await {
                let fault = self.fault(&e);
                let _ = writer.abort().await;
                return Err(fault);
            }
            let part = match read_part(&mut file, part_size, local).await {
                Ok(part) => part,
                Err(fault) => {
                    let _ = writer.abort().await;
                    return Err(fault);
                }
            };
            if part.is_empty() {
                break;
            }
            sent += part.len() as u64;
            writer.put(part);
        }
        writer.finish().await.map_err(|e| self.fault(&e))?;
        Ok(sent)
    }

    pub(crate) async fn list(&self, full_prefix: &str) -> Result<Vec<RemoteEntry>, Fault> {
        // object_store lists whole path segments: list the parent, filter by the string prefix.
        let parent = match full_prefix.rsplit_once('/') {
            Some((parent, _)) => {
                Some(ObjectPath::parse(parent).map_err(|e| Fault::new(CauseKind::Server, e))?)
            }
            None => None,
        };
        let mut stream = self.store.list(parent.as_ref());
        let mut entries = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.fault(&e))?;
            let key = meta.location.as_ref();
            if key.starts_with(full_prefix) {
                entries.push(RemoteEntry {
                    key: key.to_string(),
                    size: meta.size,
                    modified: meta.last_modified,
                });
            }
        }
        Ok(entries)
    }

    pub(crate) async fn download(&self, full_key: &str, local: &Path) -> Result<u64, Fault> {
        let path = ObjectPath::parse(full_key).map_err(|e| Fault::new(CauseKind::Server, e))?;
        let result = self.store.get(&path).await.map_err(|e| self.fault(&e))?;
        let mut partial = PartialFile::create(local).await?;
        let mut stream = result.into_stream();
        let mut received = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.fault(&e))?;
            received += chunk.len() as u64;
            partial.write(&chunk).await?;
        }
        partial.commit().await?;
        Ok(received)
    }

    pub(crate) async fn delete(&self, full_key: &str) -> Result<(), Fault> {
        let path = ObjectPath::parse(full_key).map_err(|e| Fault::new(CauseKind::Server, e))?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fault(&e)),
        }
    }
}

/// At most this many parts per upload: S3 allows 10,000, and a file may grow a little.
const MAX_PARTS: u64 = 9_000;

/// `preferred`, or more (a whole number of MiB) when the file would need over [`MAX_PARTS`].
fn part_size_for(size: u64, preferred: usize) -> usize {
    const MIB: u64 = 1024 * 1024;
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    (preferred as u64).max(needed).max(1) as usize
}

/// The kind of an object_store failure.
fn classify(e: &object_store::Error) -> CauseKind {
    match e {
        object_store::Error::NotFound { .. } => CauseKind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => CauseKind::Refused,
        other => {
            let text = other.to_string();
            let unreachable = [
                "error sending request",
                "connection refused",
                "Connection refused",
                "connection closed",
                "connection reset",
                "timed out",
                "dns error",
            ];
            if unreachable.iter().any(|m| text.contains(m)) {
                CauseKind::Unreachable
            } else {
                CauseKind::Server
            }
        }
    }
}

/// Where each backend's credentials come from, for a refusal's hint.
fn refused_hint(kind: StoreKind) -> String {
    match kind {
        StoreKind::S3 => "check the credentials (s3_key_id with AWS_SECRET_ACCESS_KEY, \
                          s3_profile, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the \
                          bucket's policy"
            .into(),
        StoreKind::B2 => "check B2_APPLICATION_KEY_ID/B2_APPLICATION_KEY (or b2_key_id and \
                          b2_app_key) and that the key may use the bucket"
            .into(),
        StoreKind::Gcs => "check gcs_keyfile or GOOGLE_APPLICATION_CREDENTIALS and the \
                           account's roles on the bucket"
            .into(),
        StoreKind::Azure => "check AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or \
                             AZURE_STORAGE_SAS_TOKEN (or azure_account and azure_key)"
            .into(),
        StoreKind::Sftp | StoreKind::None => String::new(),
    }
}

/// The account in an account URL: Azurite's first path segment, else the first host label.
fn account_from_url(service: &str) -> Option<String> {
    let url = url::Url::parse(service).ok()?;
    if let Some(first) = url
        .path_segments()
        .and_then(|mut s| s.next())
        .filter(|s| !s.is_empty())
    {
        return Some(first.to_string());
    }
    url.host_str()?.split('.').next().map(str::to_string)
}

/// GCS's API base URL from `gcs_endpoint`: a scheme added when missing, a trailing
/// `/storage/v1` (as Go clients take it) removed.
fn gcs_base_url(endpoint: &str) -> String {
    if endpoint.is_empty() {
        return "https://storage.googleapis.com".into();
    }
    let with_scheme = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    };
    let trimmed = with_scheme.trim_end_matches('/');
    trimmed
        .strip_suffix("/storage/v1")
        .unwrap_or(trimmed)
        .to_string()
}

fn is_service_account(json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| {
            v.get("type")
                .and_then(|t| t.as_str())
                .map(|t| t == "service_account")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_for_huge_files() {
        assert_eq!(part_size_for(20 << 20, 5 << 20), 5 << 20);
        assert_eq!(part_size_for(1 << 40, 8 << 20), 117 << 20);
        assert!((1u64 << 40).div_ceil(part_size_for(1 << 40, 8 << 20) as u64) <= MAX_PARTS);
    }

    #[test]
    fn s3_urls() {
        assert_eq!(
            s3_url("127.0.0.1:9000", false, None),
            "http://127.0.0.1:9000"
        );
        assert_eq!(s3_url("http://h:1/", true, None), "http://h:1");
        assert_eq!(
            s3_url("s3.eu-west-1.amazonaws.com", true, Some("b")),
            "https://b.s3.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn gcs_and_azure_urls() {
        assert_eq!(gcs_base_url("http://h:4443/storage/v1/"), "http://h:4443");
        assert_eq!(gcs_base_url("gcs.example"), "https://gcs.example");
        assert_eq!(
            account_from_url("http://127.0.0.1:10000/devstoreaccount1").as_deref(),
            Some("devstoreaccount1")
        );
        assert_eq!(
            account_from_url("https://acct.blob.core.windows.net").as_deref(),
            Some("acct")
        );
        assert!(is_service_account(r#"{"type": "service_account"}"#));
        assert!(!is_service_account(r#"{"type": "authorized_user"}"#));
    }
}
