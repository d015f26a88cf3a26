//! The node's local HTTP/JSON API, served on 127.0.0.1.
//!
//! Three middlewares guard every route, so no handler can forget them:
//! - a request whose `Host` is not the API's own address (`127.0.0.1:PORT`,
//!   `localhost:PORT`, `[::1]:PORT`) is refused with 421 `bad_host`, so a web
//!   page cannot reach the API through DNS rebinding;
//! - every request but `GET`/`HEAD` needs the bearer token the node writes to
//!   `<data dir>/api-token` at start (publish, yank, fetch, pin, keys — and an
//!   `OPTIONS` preflight, which no route answers);
//! - every reply carries the node's identity key in `x-agora-identity`, and
//!   `GET /v1/identity?challenge=HEX` signs a client's challenge with it, so the
//!   CLI knows it talks to its data dir's node before it sends the token;
//! - every error is a JSON body `{"error": {"code": "...", "message": "..."}}`
//!   with a 4xx/5xx status, including axum's own (405, rejected paths).
//!
//! There are no CORS headers: no other origin may read a response. See
//! `docs/ARCHITECTURE.md` for the route table.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agora::archive::ArchiveError;
use agora::{ArtifactData, Node, PackageName, Query, Registry, SecretKey, Version};
use axum::body::Body;
use axum::extract::Request;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::api::{
    ErrorBody, ErrorDetail, FetchLine, IDENTITY_HEADER, IdentityBody, ImportBody, KeyBody, OwnersBody, OwnersList,
    PackageBody, PinBody, StatusBody, TrustBody, YankBody,
};

mod cargo;

/// Shared state of the API handlers.
#[derive(Debug)]
pub(crate) struct ApiState {
    pub(crate) node: Node,
    pub(crate) token: String,
    pub(crate) addr: SocketAddr,
    pub(crate) upload_dir: PathBuf,
}

/// The routes.
pub(crate) fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/identity", get(identity))
        .route("/metrics", get(metrics))
        .route("/v1/search", get(search))
        .route("/v1/packages", post(publish))
        .route("/v1/packages/{name}", get(package))
        .route("/v1/packages/{name}/versions", get(versions))
        .route("/v1/packages/{name}/claims", get(claims))
        .route("/v1/packages/{name}/trust", post(trust))
        .route("/v1/packages/{name}/owners", get(owners).post(change_owners))
        .route("/v1/packages/{name}/{version}", get(manifest))
        .route("/v1/packages/{name}/{version}/artifact", get(artifact))
        .route("/v1/packages/{name}/{version}/yank", post(yank))
        .route("/v1/packages/{name}/{version}/fetch", post(fetch))
        .route("/v1/packages/{name}/{version}/pin", post(pin))
        .route("/v1/peers", get(peers))
        .route("/v1/key", get(key))
        .route("/v1/key/export", post(export_key))
        .route("/v1/key/import", post(import_key))
        .route("/v1/key/rotate", post(rotate_key))
        .route("/v1/cargo/crates", post(import_crate))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route; see `agora --help`")
        })
        // Inner to outer: the token, JSON errors, the identity header, the Host check.
        .layer(from_fn_with_state(state.clone(), require_token))
        // Cargo's routes check the token as cargo sends it, and answer in cargo's error form.
        .nest("/cargo", cargo::router(state.clone()))
        .layer(from_fn(json_errors))
        .layer(from_fn_with_state(state.clone(), identity_header))
        .layer(from_fn_with_state(state.clone(), refuse_other_hosts))
        // Uploads are streamed to disk under our own limit, not buffered by axum.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Refuses a request whose `Host` header is not this API's own address.
async fn refuse_other_hosts(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    match host {
        Some(host) if is_own_host(&host, state.addr) => next.run(request).await,
        found => {
            let found = found.map_or_else(|| "none".to_owned(), |host| format!("`{host}`"));
            let port = state.addr.port();
            let mut own = vec![format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")];
            if !own.contains(&state.addr.to_string()) {
                own.push(state.addr.to_string());
            }
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "bad_host",
                format!("this API answers only requests for {}; the Host header was {found}", own.join(", ")),
            )
            .into_response()
        }
    }
}

/// Whether `host` (a `Host` header) names the API at `addr`: its own address,
/// `localhost`, `127.0.0.1` or `[::1]`, with its port (an absent port is 80).
fn is_own_host(host: &str, addr: SocketAddr) -> bool {
    let Ok(authority) = host.parse::<axum::http::uri::Authority>() else { return false };
    if authority.as_str().contains('@') || authority.port_u16().unwrap_or(80) != addr.port() {
        return false;
    }
    let name = authority.host().to_ascii_lowercase();
    let own = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    ["localhost", "127.0.0.1", "[::1]", own.as_str()].contains(&name.as_str())
}

/// Adds the node's identity key to every reply.
async fn identity_header(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Ok(value) = header::HeaderValue::from_str(&state.node.identity().to_hex()) {
        response.headers_mut().insert(IDENTITY_HEADER, value);
    }
    response
}

/// Every request but `GET`/`HEAD` changes something (or asks for a secret), so
/// it needs the token.
async fn require_token(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let reads = request.method() == Method::GET || request.method() == Method::HEAD;
    if !reads && let Err(error) = authorize(&state, request.headers()) {
        return error.into_response();
    }
    next.run(request).await
}

/// Turns an error reply that is not JSON yet (axum's 405, its extractor
/// rejections) into the API's JSON error body with a stable code.
async fn json_errors(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    // axum adds the `Allow` header of a 405 itself, outside this middleware.
    let error = if status == StatusCode::METHOD_NOT_ALLOWED {
        let message = format!("{method} is not allowed on {path}; the Allow header lists the methods that are");
        ApiError::new(status, "method_not_allowed", message)
    } else {
        let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
        ApiError::new(status, code_for_status(status), message)
    };
    if path.starts_with("/cargo/") {
        return cargo::CargoError::from(error).into_response();
    }
    error.into_response()
}

/// The code of an error reply that had none (see [`json_errors`]).
fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        status if status.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// An API error: status, stable code, human message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, code = self.code, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, code = self.code, message = %self.message, "request refused");
        }
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        (self.status, Json(body)).into_response()
    }
}

impl From<agora::core::Error> for ApiError {
    /// Statuses by [`agora::ErrorKind`], with a stable `code` per kind; the
    /// message is the error with its causes.
    fn from(error: agora::core::Error) -> Self {
        use agora::ErrorKind;
        use agora::core::Error as E;
        let (status, code) = match (&error, error.kind()) {
            (E::ArtifactTooLarge { .. }, _) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            (E::NotOwner { .. }, _) => (StatusCode::FORBIDDEN, "not_owner"),
            (_, ErrorKind::InvalidInput) => (StatusCode::BAD_REQUEST, "invalid"),
            (_, ErrorKind::NotFound) => (StatusCode::NOT_FOUND, "not_found"),
            (_, ErrorKind::Conflict) => (StatusCode::CONFLICT, "conflict"),
            (_, ErrorKind::Unavailable) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            (_, ErrorKind::Timeout) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            (_, ErrorKind::Internal) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, with_causes(&error))
    }
}

/// An error's message followed by each of its causes not already in it.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

impl From<agora::Error> for ApiError {
    fn from(error: agora::Error) -> Self {
        match error {
            agora::Error::Archive(ArchiveError::TooLarge { .. }) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", error.to_string())
            }
            agora::Error::Archive(ArchiveError::Io { .. }) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string())
            }
            agora::Error::Archive(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_archive", error.to_string()),
            agora::Error::Cargo(agora::cargo::CargoError::TooLarge { .. }) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", error.to_string())
            }
            agora::Error::Cargo(agora::cargo::CargoError::NearDuplicate { .. }) => {
                Self::new(StatusCode::CONFLICT, "near_duplicate", error.to_string())
            }
            agora::Error::Cargo(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_crate", error.to_string()),
            agora::Error::KeyOwnsPackages { .. } => {
                Self::new(StatusCode::CONFLICT, "key_owns_packages", error.to_string())
            }
            other => match other.as_registry_error() {
                Some(registry) => registry.into(),
                None => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", other.to_string()),
            },
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn authorize(state: &ApiState, headers: &HeaderMap) -> ApiResult<()> {
    let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "this operation needs the node's API token (Authorization: Bearer <token from <data dir>/api-token>)",
        ));
    };
    let presented = value.to_str().ok().and_then(|text| text.strip_prefix("Bearer ")).unwrap_or_default();
    if !constant_time_eq(presented.trim().as_bytes(), state.token.as_bytes()) {
        return Err(unauthorized(
            "invalid API token; the node writes a new one to <data dir>/api-token at every start",
        ));
    }
    Ok(())
}

/// The node's upload limit (`max_artifact_size`); an upload whose declared
/// length is over it is refused before any of it is read.
fn upload_limit(state: &ApiState, headers: &HeaderMap) -> ApiResult<u64> {
    let limit = state.node.config().max_artifact_size;
    match content_length(headers).filter(|length| *length > limit) {
        Some(length) => Err(too_large(length, limit)),
        None => Ok(limit),
    }
}

fn too_large(size: u64, limit: u64) -> ApiError {
    agora::core::Error::ArtifactTooLarge { size, limit }.into()
}

/// The `Content-Length` a request declares, if any (and a number).
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_name(name: &str) -> ApiResult<PackageName> {
    PackageName::parse(name).map_err(|error| ApiError::bad_request(error.to_string()))
}

fn parse_version(version: &str) -> ApiResult<Version> {
    agora::parse_version(version).map_err(|error| ApiError::bad_request(error.to_string()))
}

async fn status(State(state): State<Arc<ApiState>>) -> ApiResult<Json<StatusBody>> {
    Ok(Json(StatusBody { status: state.node.status().await?, api: state.addr }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityParams {
    /// 32 bytes, hex.
    challenge: Option<String>,
}

/// The node's identity key and, for a challenge, its proof of holding it.
async fn identity(
    State(state): State<Arc<ApiState>>,
    params: Result<axum::extract::Query<IdentityParams>, QueryRejection>,
) -> ApiResult<Json<IdentityBody>> {
    let axum::extract::Query(params) = params.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let signature = match params.challenge {
        Some(text) => {
            let mut challenge = [0u8; 32];
            hex::decode_to_slice(&text, &mut challenge).map_err(|_| {
                ApiError::bad_request(format!("challenge: expected 64 hex characters, found {} characters", text.len()))
            })?;
            Some(state.node.prove_identity(&challenge))
        }
        None => None,
    };
    Ok(Json(IdentityBody { identity: state.node.identity(), signature }))
}

async fn peers(State(state): State<Arc<ApiState>>) -> ApiResult<Json<Vec<agora::PeerInfo>>> {
    Ok(Json(state.node.peers().await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    q: String,
    /// Comma-separated.
    category: Option<String>,
    /// Comma-separated.
    tag: Option<String>,
    publisher: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
    /// Ask peers too.
    #[serde(default)]
    network: bool,
    /// Network search settings: a preset, then overrides.
    preset: Option<String>,
    timeout_ms: Option<u64>,
    fan_out: Option<usize>,
    max_results: Option<usize>,
}

impl SearchParams {
    /// The network search settings, or `None` for a local search.
    fn query_config(&self) -> ApiResult<Option<agora::QueryConfig>> {
        if !self.network {
            let given = [
                ("preset", self.preset.is_some()),
                ("timeout_ms", self.timeout_ms.is_some()),
                ("fan_out", self.fan_out.is_some()),
                ("max_results", self.max_results.is_some()),
            ];
            if let Some((name, _)) = given.iter().find(|(_, given)| *given) {
                return Err(ApiError::bad_request(format!("`{name}` applies only to network searches (network=true)")));
            }
            return Ok(None);
        }
        if self.offset.is_some_and(|offset| offset != 0) {
            return Err(ApiError::bad_request("a network search returns one page; offset must be 0"));
        }
        let mut config = match &self.preset {
            Some(name) => agora::QueryConfig::preset(name)?,
            None => agora::QueryConfig::balanced(),
        };
        if let Some(ms) = self.timeout_ms {
            config.timeout = std::time::Duration::from_millis(ms);
        }
        if let Some(fan_out) = self.fan_out {
            config.fan_out = fan_out;
        }
        if let Some(max_results) = self.max_results.or(self.limit.map(|limit| limit as usize)) {
            config.max_results = max_results;
        }
        config.validate()?;
        Ok(Some(config))
    }
}

/// Every metric in the OpenMetrics text format, for Prometheus.
async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    ([(header::CONTENT_TYPE, agora::METRICS_CONTENT_TYPE)], state.node.encode_metrics()).into_response()
}

async fn search(
    State(state): State<Arc<ApiState>>,
    params: Result<axum::extract::Query<SearchParams>, QueryRejection>,
) -> ApiResult<Json<agora::SearchResults>> {
    let axum::extract::Query(params) = params.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let network = params.query_config()?;
    let split = |value: Option<String>| -> Vec<String> {
        value
            .map(|text| text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let mut query = Query::new(params.q);
    query.categories = split(params.category);
    query.tags = split(params.tag);
    if let Some(publisher) = params.publisher {
        query.publisher = Some(
            publisher.parse().map_err(|error: agora::core::DecodeError| ApiError::bad_request(error.to_string()))?,
        );
    }
    query.limit = params.limit.unwrap_or(Query::DEFAULT_LIMIT);
    query.offset = params.offset.unwrap_or(0);
    match network {
        Some(config) => Ok(Json(state.node.search_network(&query, config)?.collect_results().await)),
        None => Ok(Json(state.node.search(&query).await?)),
    }
}

async fn package(State(state): State<Arc<ApiState>>, Path(name): Path<String>) -> ApiResult<Json<PackageBody>> {
    let name = parse_name(&name)?;
    let index = state.node.get_package(&name).await?;
    let latest = match index.index().latest() {
        Some(entry) => Some(state.node.get_version(&name, &entry.version).await?),
        None => None,
    };
    let claims = state.node.claims(&name).await?;
    Ok(Json(PackageBody { index, latest, claims }))
}

async fn claims(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<agora::core::NameClaims>> {
    let name = parse_name(&name)?;
    Ok(Json(state.node.claims(&name).await?))
}

fn owners_list(index: &agora::PackageIndex) -> OwnersList {
    OwnersList {
        name: index.name.clone(),
        owners: index.current_owners().iter().map(agora::PublicKey::to_hex).collect(),
    }
}

async fn owners(State(state): State<Arc<ApiState>>, Path(name): Path<String>) -> ApiResult<Json<OwnersList>> {
    let name = parse_name(&name)?;
    Ok(Json(owners_list(state.node.get_package(&name).await?.index())))
}

async fn change_owners(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: Result<Json<OwnersBody>, JsonRejection>,
) -> ApiResult<Json<OwnersList>> {
    let Json(body) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let name = parse_name(&name)?;
    let parse = |keys: &[String]| -> ApiResult<Vec<agora::PublicKey>> {
        keys.iter()
            .map(|key| {
                key.trim()
                    .parse()
                    .map_err(|error: agora::core::DecodeError| ApiError::bad_request(format!("`{key}`: {error}")))
            })
            .collect()
    };
    let (add, remove) = (parse(&body.add)?, parse(&body.remove)?);
    let current = state.node.get_package(&name).await?;
    let mut owners = current.index().current_owners().to_vec();
    if let Some(missing) = remove.iter().find(|key| !owners.contains(key)) {
        return Err(ApiError::bad_request(format!("{missing} is not an owner of `{name}`")));
    }
    owners.retain(|owner| !remove.contains(owner));
    for key in add {
        if !owners.contains(&key) {
            owners.push(key);
        }
    }
    if owners.is_empty() {
        return Err(ApiError::bad_request(format!("`{name}` needs at least one owner")));
    }
    Ok(Json(owners_list(&state.node.set_owners(&name, owners).await?)))
}

async fn rotate_key(State(state): State<Arc<ApiState>>) -> ApiResult<Json<agora::KeyRotation>> {
    Ok(Json(state.node.rotate_publisher_key().await?))
}

async fn trust(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: Result<Json<TrustBody>, JsonRejection>,
) -> ApiResult<Json<agora::core::NameClaims>> {
    let Json(body) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let name = parse_name(&name)?;
    let owner: agora::PublicKey =
        body.owner.parse().map_err(|error: agora::core::DecodeError| ApiError::bad_request(error.to_string()))?;
    Ok(Json(state.node.trust(&name, &owner).await?))
}

async fn versions(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<agora::VersionEntry>>> {
    let name = parse_name(&name)?;
    Ok(Json(state.node.list_versions(&name).await?))
}

async fn manifest(
    State(state): State<Arc<ApiState>>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<agora::SignedManifest>> {
    let (name, version) = (parse_name(&name)?, parse_version(&version)?);
    Ok(Json(state.node.get_version(&name, &version).await?))
}

async fn artifact(
    State(state): State<Arc<ApiState>>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    use futures::io::AsyncReadExt as _;
    let (name, version) = (parse_name(&name)?, parse_version(&version)?);
    let corrupt = |error: agora::core::Error| match error {
        agora::core::Error::DigestMismatch { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt_artifact",
            format!("the node's copy of {name}@{version} is corrupted on disk ({error}); it will not be served"),
        ),
        other => other.into(),
    };
    let mut artifact = state.node.fetch_artifact(&name, &version).await.map_err(corrupt)?;
    let info = artifact.manifest().manifest().artifact.clone();
    // The first chunk is read (and verified) before the status line goes out, so
    // a copy corrupted at its start is a 500, not a broken download; a later
    // corrupted chunk ends the body early (the client sees a short read).
    let mut first = vec![0u8; (info.chunk_size as usize).min(info.size as usize)];
    artifact.read_exact(&mut first).await.map_err(|error| corrupt(agora::core::Error::from_read(error)))?;
    let rest = tokio_util::io::ReaderStream::with_capacity(
        tokio_util::compat::FuturesAsyncReadCompatExt::compat(artifact),
        64 * 1024,
    );
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(first)) }).chain(rest);
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_owned()),
            (header::CONTENT_LENGTH, info.size.to_string()),
            (header::HeaderName::from_static("x-agora-digest"), info.digest.to_hex()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

async fn publish(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<agora::Published>> {
    let limit = upload_limit(&state, &headers)?;
    let too_large = |size: u64| too_large(size, limit);
    // Stream the upload into a temp file, never holding it whole in memory.
    let internal = |error: std::io::Error| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("upload: {error}"))
    };
    tokio::fs::create_dir_all(&state.upload_dir).await.map_err(internal)?;
    let temp = tempfile::NamedTempFile::new_in(&state.upload_dir).map_err(internal)?;
    let (file, path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| ApiError::bad_request(format!("upload interrupted: {error}")))?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(too_large(received));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    if received == 0 {
        return Err(ApiError::bad_request("empty upload; send the package's .tar.gz as the request body"));
    }
    file.flush().await.map_err(internal)?;
    drop(file);
    let published = state.node.publish_archive(ArtifactData::File(path.to_path_buf())).await?;
    drop(path);
    Ok(Json(published))
}

/// `agora cargo import`: one `.crate` file as the body (at most
/// `max_artifact_size` bytes), published as it is.
async fn import_crate(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<agora::Published>> {
    let limit = upload_limit(&state, &headers)?;
    let too_large = |size: u64| too_large(size, limit);
    let body = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|_| too_large(limit.saturating_add(1)))?;
    Ok(Json(state.node.import_crate(body.to_vec()).await?))
}

/// Makes the node hold the artifact (downloading it from peers if needed) and
/// streams progress as newline-delimited JSON; the last line says done or why not.
async fn fetch(
    State(state): State<Arc<ApiState>>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    use futures::StreamExt as _;
    let (name, version) = (parse_name(&name)?, parse_version(&version)?);
    let fetch = state.node.fetch(&name, &version).await?;
    let line = |progress: agora::TransferProgress, error: Option<String>| {
        let mut text = serde_json::to_vec(&FetchLine { progress, error }).unwrap_or_default();
        text.push(b'\n');
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(text))
    };
    let lines = futures::stream::unfold(Some(fetch), move |step| async move {
        let mut fetch = step?;
        match fetch.next().await {
            Some(_) => {
                // At most ten progress lines a second, each the latest state.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                Some((line(fetch.progress(), None), Some(fetch)))
            }
            None => {
                let mut last = fetch.progress();
                let error = match fetch.done().await {
                    Ok(()) => {
                        last.state = agora::TransferState::Done;
                        None
                    }
                    Err(error) => Some(error.to_string()),
                };
                Some((line(last, error), None))
            }
        }
    })
    .boxed();
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response())
}

async fn pin(
    State(state): State<Arc<ApiState>>,
    Path((name, version)): Path<(String, String)>,
    body: Result<Json<PinBody>, JsonRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Json(body) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let (name, version) = (parse_name(&name)?, parse_version(&version)?);
    if !state.node.set_pinned(&name, &version, body.pinned).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("this node does not hold the artifact of {name}@{version}; fetch it first"),
        ));
    }
    Ok(Json(serde_json::json!({ "name": name, "version": version, "pinned": body.pinned })))
}

async fn yank(
    State(state): State<Arc<ApiState>>,
    Path((name, version)): Path<(String, String)>,
    body: Result<Json<YankBody>, JsonRejection>,
) -> ApiResult<Json<agora::IndexChange>> {
    let Json(body) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let (name, version) = (parse_name(&name)?, parse_version(&version)?);
    Ok(Json(state.node.set_yanked(&name, &version, body.yanked).await?))
}

async fn key(State(state): State<Arc<ApiState>>) -> Json<KeyBody> {
    Json(KeyBody { public_key: state.node.publisher_key().to_hex(), secret_key: None })
}

async fn export_key(State(state): State<Arc<ApiState>>) -> ApiResult<Json<KeyBody>> {
    let secret = state.node.export_publisher_key();
    Ok(Json(KeyBody { public_key: secret.public_key().to_hex(), secret_key: Some(secret.to_hex()) }))
}

async fn import_key(
    State(state): State<Arc<ApiState>>,
    body: Result<Json<ImportBody>, JsonRejection>,
) -> ApiResult<Json<KeyBody>> {
    let Json(body) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let secret = SecretKey::from_hex(&body.secret_key).map_err(|error| ApiError::bad_request(error.to_string()))?;
    let public_key = secret.public_key().to_hex();
    state.node.import_publisher_key(secret, body.force).await?;
    Ok(Json(KeyBody { public_key, secret_key: None }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use agora::ErrorKind;
    use agora::core::{Error, Unavailable};

    use super::*;

    /// The status and code the API documents for each kind (see `ApiError`'s
    /// `From<agora::core::Error>`); a new kind does not compile until it is here.
    fn documented(kind: ErrorKind) -> (u16, &'static str) {
        match kind {
            ErrorKind::InvalidInput => (400, "invalid"),
            ErrorKind::NotFound => (404, "not_found"),
            ErrorKind::Conflict => (409, "conflict"),
            ErrorKind::Unavailable => (503, "unavailable"),
            ErrorKind::Timeout => (504, "timeout"),
            ErrorKind::Internal => (500, "internal"),
        }
    }

    /// What a client receives for `error`: the status and the parsed JSON body.
    async fn reply(error: impl Into<ApiError>) -> (u16, ErrorBody) {
        let response = error.into().into_response();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).expect("error bodies are JSON {\"error\": {code, message}}"))
    }

    fn name() -> PackageName {
        "demo".parse().unwrap()
    }

    fn version() -> Version {
        "1.0.0".parse().unwrap()
    }

    /// A cause with a cause of its own, as a storage backend reports it.
    #[derive(Debug)]
    struct Writing(std::io::Error);

    impl std::fmt::Display for Writing {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("writing the catalog")
        }
    }

    impl std::error::Error for Writing {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[tokio::test]
    async fn every_error_kind_gets_its_documented_status_and_code() {
        let cases = [
            Error::InvalidQuery("limit must be between 1 and 100".into()),
            Error::PackageNotFound(name()),
            Error::VersionNotFound { name: name(), version: version() },
            Error::ArtifactUnavailable { name: name(), version: version() },
            Error::VersionExists { name: name(), version: version(), existing: agora::Digest::of(b"x") },
            Error::StaleSequence { name: name(), current: 2, offered: 1 },
            Error::Unavailable { what: "fetching demo@1.0.0".into(), reason: Unavailable::Offline },
            Error::Unavailable { what: "fetching demo@1.0.0".into(), reason: Unavailable::NoProvider("none".into()) },
            Error::Unavailable { what: "fetching demo@1.0.0".into(), reason: Unavailable::Stopped },
            Error::Timeout { what: "a dht lookup".into(), after: Duration::from_millis(300) },
            Error::storage(std::io::Error::other("disk full")),
            Error::io(std::io::Error::other("permission denied")),
            Error::Internal("a task panicked".into()),
        ];
        let mut kinds = std::collections::HashSet::new();
        for error in cases {
            let (kind, text) = (error.kind(), error.to_string());
            kinds.insert(kind);
            let (status, body) = reply(error).await;
            assert_eq!((status, body.error.code.as_str()), documented(kind), "{kind:?}: {text}");
            assert!(body.error.message.starts_with(&text), "{kind:?}: {:?} lost {text:?}", body.error.message);
        }
        let all = [
            ErrorKind::InvalidInput,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
            ErrorKind::Internal,
        ];
        assert_eq!(kinds, all.into_iter().collect(), "a case for every kind");
    }

    #[tokio::test]
    async fn input_errors_with_a_status_of_their_own_keep_it() {
        let (status, body) = reply(Error::ArtifactTooLarge { size: 5000, limit: 4096 }).await;
        assert_eq!((status, body.error.code.as_str()), (413, "too_large"));
        assert!(body.error.message.contains("over the limit of 4096 bytes"), "{}", body.error.message);
        let not_owner = Error::NotOwner { name: name(), owner: "aa".repeat(32), signer: "bb".repeat(32) };
        let (status, body) = reply(not_owner).await;
        assert_eq!((status, body.error.code.as_str()), (403, "not_owner"));
        // The facade's error reaches the same mapping through its registry error.
        let (status, body) = reply(agora::Error::from(Error::PackageNotFound(name()))).await;
        assert_eq!((status, body.error.code.as_str()), (404, "not_found"));
        assert_eq!(body.error.message, "package `demo` not found");
    }

    #[test]
    fn only_the_apis_own_host_names_are_accepted() {
        let v4: SocketAddr = "127.0.0.1:7420".parse().unwrap();
        for host in ["127.0.0.1:7420", "localhost:7420", "LOCALHOST:7420", "[::1]:7420"] {
            assert!(is_own_host(host, v4), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:7420",
            "localhost.evil.example:7420",
            "127.0.0.1.evil.example:7420",
            "localhost:7421",
            "localhost",
            "127.0.0.1",
            "127.0.0.2:7420",
            "user@localhost:7420",
            "localhost:7420/path",
            "",
            ":7420",
        ] {
            assert!(!is_own_host(host, v4), "{host}");
        }
        let other_loopback: SocketAddr = "127.0.0.5:80".parse().unwrap();
        assert!(is_own_host("127.0.0.5", other_loopback), "port 80 may be left out");
        assert!(is_own_host("127.0.0.5:80", other_loopback));
        let v6: SocketAddr = "[::1]:7420".parse().unwrap();
        assert!(is_own_host("[::1]:7420", v6) && is_own_host("localhost:7420", v6));
        assert!(!is_own_host("[::2]:7420", v6));
    }

    #[tokio::test]
    async fn an_error_message_carries_each_cause_once() {
        let (status, body) = reply(Error::storage(std::io::Error::other("disk full"))).await;
        assert_eq!((status, body.error.code.as_str()), (500, "internal"));
        assert_eq!(body.error.message, "storage error: disk full");

        // A cause's own cause is not in the error's text: it is appended, once.
        let nested = Error::storage(Writing(std::io::Error::other("disk full")));
        assert_eq!(nested.to_string(), "storage error: writing the catalog");
        let (_, body) = reply(nested).await;
        assert_eq!(body.error.message, "storage error: writing the catalog: disk full");
        assert_eq!(body.error.message.matches("disk full").count(), 1);
        assert_eq!(body.error.message.matches("writing the catalog").count(), 1);
    }
}
