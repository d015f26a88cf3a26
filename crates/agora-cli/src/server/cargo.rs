//! The Cargo registry gateway under `/cargo/`: cargo's sparse index and web
//! API, as the Cargo reference's "Registry Index" and "Registry Web API"
//! describe them, over the node's [`CrateView`]s.
//!
//! | route | what |
//! |---|---|
//! | `GET /cargo/index/config.json` | the extra registry's `dl` and `api` |
//! | `GET /cargo/index/{prefix}/{name}` | a crate's index file (`ETag`, `304`, `404`) |
//! | `GET /cargo/api/v1/crates/{crate}/{version}/download` | the `.crate` bytes |
//! | `PUT /cargo/api/v1/crates/new` | `cargo publish` (token) |
//! | `DELETE /cargo/api/v1/crates/{crate}/{version}/yank` | `cargo yank` (token) |
//! | `PUT /cargo/api/v1/crates/{crate}/{version}/unyank` | `cargo yank --undo` (token) |
//! | `GET /cargo/api/v1/crates?q=&per_page=` | `cargo search` |
//! | `GET /cargo/api/v1/crates/{crate}/owners` | `cargo owner --list` |
//! | `GET /cargo/mirror/index/…`, `GET /cargo/mirror/api/v1/crates/{crate}/{version}/download` | the crates.io mirror: trusted owners only |
//!
//! Cargo sends the token as `Authorization: <token>` (no scheme); `Bearer
//! <token>` is accepted too. Every error is `{"errors":[{"detail": "…"}]}`.

use std::sync::Arc;

use agora::cargo::{CrateName, MAX_PUBLISH_JSON};
use agora::{CrateView, Query, Registry};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, content_length};

/// The `/cargo` routes (nested by the caller), with their own token check.
pub(super) fn router(state: Arc<ApiState>) -> Router<Arc<ApiState>> {
    Router::new()
        .route("/index/config.json", get(registry_config))
        .route("/index/{*path}", get(registry_index))
        .route("/mirror/index/config.json", get(mirror_config))
        .route("/mirror/index/{*path}", get(mirror_index))
        .route("/api/v1/crates", get(search))
        .route("/api/v1/crates/new", put(publish))
        .route("/api/v1/crates/{name}/owners", get(owners))
        .route("/api/v1/crates/{name}/{version}/download", get(registry_download))
        .route("/api/v1/crates/{name}/{version}/yank", delete(yank))
        .route("/api/v1/crates/{name}/{version}/unyank", put(unyank))
        .route("/mirror/api/v1/crates/{name}/{version}/download", get(mirror_download))
        .fallback(|| async { CargoError::new(StatusCode::NOT_FOUND, "no such Cargo registry route") })
        .layer(from_fn_with_state(state, require_cargo_token))
}

/// An error as cargo reads it.
#[derive(Debug)]
pub(super) struct CargoError {
    status: StatusCode,
    detail: String,
}

impl CargoError {
    pub(super) fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into() }
    }

    fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
}

/// `{"errors":[{"detail": …}]}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CargoErrors {
    pub(crate) errors: Vec<CargoErrorDetail>,
}

/// One of [`CargoErrors`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CargoErrorDetail {
    pub(crate) detail: String,
}

impl IntoResponse for CargoError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, detail = %self.detail, "cargo request failed");
        } else {
            tracing::debug!(status = %self.status, detail = %self.detail, "cargo request refused");
        }
        (self.status, Json(CargoErrors { errors: vec![CargoErrorDetail { detail: self.detail }] })).into_response()
    }
}

impl<E: Into<ApiError>> From<E> for CargoError {
    fn from(error: E) -> Self {
        let error: ApiError = error.into();
        Self { status: error.status, detail: error.message }
    }
}

type CargoResult<T> = Result<T, CargoError>;

/// Writes need the API token, sent as cargo sends it.
async fn require_cargo_token(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let reads = request.method() == Method::GET || request.method() == Method::HEAD;
    if !reads {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.strip_prefix("Bearer ").unwrap_or(value).trim());
        let detail = match presented {
            None => Some(
                "this registry needs the node's API token: `cargo login --registry agora` with the contents of \
                 <data dir>/api-token, or the credential provider `agora cargo config` prints",
            ),
            Some(token) if !super::constant_time_eq(token.as_bytes(), state.token.as_bytes()) => Some(
                "invalid token; the node writes a new one to <data dir>/api-token at every start (the credential \
                 provider `agora cargo config` prints always reads the current one)",
            ),
            Some(_) => None,
        };
        if let Some(detail) = detail {
            return CargoError::new(StatusCode::FORBIDDEN, detail).into_response();
        }
    }
    next.run(request).await
}

/// `config.json` of a registry: where cargo downloads and calls the API.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RegistryConfig {
    pub(crate) dl: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) api: Option<String>,
}

async fn registry_config(State(state): State<Arc<ApiState>>) -> Json<RegistryConfig> {
    let base = format!("http://{}/cargo", state.addr);
    Json(RegistryConfig { dl: format!("{base}/api/v1/crates"), api: Some(base) })
}

/// The mirror has no web API: cargo never publishes to a replaced crates.io.
async fn mirror_config(State(state): State<Arc<ApiState>>) -> Json<RegistryConfig> {
    Json(RegistryConfig { dl: format!("http://{}/cargo/mirror/api/v1/crates", state.addr), api: None })
}

async fn registry_index(state: State<Arc<ApiState>>, path: Path<String>, headers: HeaderMap) -> Response {
    index_file(state, path, headers, CrateView::Registry).await
}

async fn mirror_index(state: State<Arc<ApiState>>, path: Path<String>, headers: HeaderMap) -> Response {
    index_file(state, path, headers, CrateView::Mirror).await
}

/// A crate's index file; `304` when the client's `If-None-Match` holds its
/// current `ETag`; `404` for a path that is no crate's or a crate not in `view`.
async fn index_file(
    State(state): State<Arc<ApiState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    view: CrateView,
) -> Response {
    let not_found = || CargoError::new(StatusCode::NOT_FOUND, format!("no crate at index path `{path}`"));
    let Ok(name) = CrateName::from_index_path(&path) else { return not_found().into_response() };
    let file = match state.node.crate_index(&name, view).await {
        Ok(Some(file)) => file,
        Ok(None) => return not_found().into_response(),
        Err(error) => return CargoError::from(error).into_response(),
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == file.etag || tag.trim() == "*"));
    let etag = [(header::ETAG, file.etag)];
    if matches {
        return (StatusCode::NOT_MODIFIED, etag).into_response();
    }
    (etag, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], file.text).into_response()
}

fn parse_crate(name: &str) -> CargoResult<CrateName> {
    CrateName::parse(name).map_err(|error| CargoError::bad_request(error.to_string()))
}

fn parse_version(version: &str) -> CargoResult<agora::Version> {
    agora::parse_version(version).map_err(|error| CargoError::bad_request(error.to_string()))
}

async fn registry_download(state: State<Arc<ApiState>>, path: Path<(String, String)>) -> CargoResult<Response> {
    download(state, path, CrateView::Registry).await
}

async fn mirror_download(state: State<Arc<ApiState>>, path: Path<(String, String)>) -> CargoResult<Response> {
    download(state, path, CrateView::Mirror).await
}

/// The `.crate` bytes, fetched from peers first when the node lacks them; only
/// bytes whose SHA-256 is the signed `cksum` are sent.
async fn download(
    State(state): State<Arc<ApiState>>,
    Path((name, version)): Path<(String, String)>,
    view: CrateView,
) -> CargoResult<Response> {
    let (name, version) = (parse_crate(&name)?, parse_version(&version)?);
    let bytes = state.node.crate_file(&name, &version, view).await?;
    Ok(([(header::CONTENT_TYPE, "application/gzip")], bytes).into_response())
}

/// What a publish answers: cargo prints the warnings.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PublishWarnings {
    pub(crate) invalid_categories: Vec<String>,
    pub(crate) invalid_badges: Vec<String>,
    pub(crate) other: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PublishReply {
    pub(crate) warnings: PublishWarnings,
}

/// `cargo publish`: the whole body is read (at most the node's
/// `max_artifact_size` of `.crate` plus the JSON and its framing), checked and
/// signed; nothing is stored unless all of it is valid.
async fn publish(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> CargoResult<Json<PublishReply>> {
    let limit = state.node.config().max_artifact_size.saturating_add(MAX_PUBLISH_JSON as u64 + 8);
    let too_large = |size: String| {
        CargoError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the publish request is {size} bytes, over this node's limit of {limit} bytes (max_artifact_size {} \
                 plus the metadata)",
                state.node.config().max_artifact_size
            ),
        )
    };
    if let Some(length) = content_length(&headers).filter(|length| *length > limit) {
        return Err(too_large(length.to_string()));
    }
    let body = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|_| too_large("more than that".into()))?;
    let published = state.node.publish_cargo(body.to_vec()).await?;
    let mut warnings = PublishWarnings::default();
    if !published.created {
        warnings.other.push("this version was already published with these exact bytes; nothing changed".into());
    }
    Ok(Json(PublishReply { warnings }))
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OkReply {
    pub(crate) ok: bool,
}

async fn yank(state: State<Arc<ApiState>>, path: Path<(String, String)>) -> CargoResult<Json<OkReply>> {
    set_yanked(state, path, true).await
}

async fn unyank(state: State<Arc<ApiState>>, path: Path<(String, String)>) -> CargoResult<Json<OkReply>> {
    set_yanked(state, path, false).await
}

async fn set_yanked(
    State(state): State<Arc<ApiState>>,
    Path((name, version)): Path<(String, String)>,
    yanked: bool,
) -> CargoResult<Json<OkReply>> {
    let (name, version) = (parse_crate(&name)?, parse_version(&version)?);
    state.node.set_yanked(&name.package_name(), &version, yanked).await?;
    Ok(Json(OkReply { ok: true }))
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: String,
    per_page: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SearchReply {
    pub(crate) crates: Vec<SearchCrate>,
    pub(crate) meta: SearchMeta,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SearchCrate {
    pub(crate) name: String,
    pub(crate) max_version: String,
    pub(crate) description: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SearchMeta {
    pub(crate) total: u64,
}

/// `cargo search`: the node's local catalog searched (name, description,
/// keywords), crates only, at most `per_page` (≤ 100) of the first 100 hits.
/// Each name is spelled as its publisher spelled it.
async fn search(
    State(state): State<Arc<ApiState>>,
    params: Result<axum::extract::Query<SearchParams>, QueryRejection>,
) -> CargoResult<Json<SearchReply>> {
    let axum::extract::Query(params) = params.map_err(|rejection| CargoError::bad_request(rejection.body_text()))?;
    let per_page = params.per_page.unwrap_or(10).clamp(1, Query::MAX_LIMIT) as usize;
    let query = Query::new(params.q).limit(Query::MAX_LIMIT);
    let results = state.node.search(&query).await?;
    let hits: Vec<_> = results.hits.into_iter().filter(|hit| hit.name.is_crate()).collect();
    let total = hits.len() as u64;
    let mut crates = Vec::with_capacity(per_page.min(hits.len()));
    for hit in hits.into_iter().take(per_page) {
        let manifest = state.node.get_version(&hit.name, &hit.version).await?;
        let Some(entry) = &manifest.manifest().cargo else { continue };
        crates.push(SearchCrate {
            name: entry.name.to_string(),
            max_version: hit.version.to_string(),
            description: hit.description,
        });
    }
    Ok(Json(SearchReply { crates, meta: SearchMeta { total } }))
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OwnersReply {
    pub(crate) users: Vec<Owner>,
}

/// An owner as cargo lists it: the login is the publisher key (hex).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub(crate) id: u32,
    pub(crate) login: String,
    pub(crate) name: Option<String>,
}

async fn owners(State(state): State<Arc<ApiState>>, Path(name): Path<String>) -> CargoResult<Json<OwnersReply>> {
    let name = parse_crate(&name)?;
    let index = state.node.get_package(&name.package_name()).await?.into_index();
    let users =
        (1..).zip(index.current_owners()).map(|(id, key)| Owner { id, login: key.to_hex(), name: None }).collect();
    Ok(Json(OwnersReply { users }))
}
