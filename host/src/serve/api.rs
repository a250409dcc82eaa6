//! The JSON API: the command line's listings and requests, over HTTP. Errors are JSON
//! (`{"error": MESSAGE}`) with the command line's messages and a status code that says whose
//! fault it is: 400 a malformed request, 401 no or a wrong token (or one in the address of
//! anything but the dashboard's page), 403 a request addressed to another host or, to act,
//! sent from another site ([`super::access`]), 404 nothing by that name, 409 a job in the wrong
//! state for the request, or with a save or stop already in flight (one at a time per job: a
//! second is refused, not queued, [`super::in_flight`]), 502 a job that did not answer, 500 the
//! state folder.
//!
//! | route | does |
//! |---|---|
//! | `GET /api/jobs` | `host list` |
//! | `GET /api/jobs/{id}` | one job; with its counters and checkpoints while it runs |
//! | `GET /api/jobs/{id}/metrics` | its counters, topology and checkpoint history |
//! | `GET /api/jobs/{id}/checkpoints` | its checkpoint history (id, duration, size, alignment) |
//! | `POST /api/jobs/{id}/save` | `host save` |
//! | `POST /api/jobs/{id}/stop[?save=true]` | `host stop [--save]` |
//! | `POST /api/jobs/{id}/shadow` | `host shadow --from ID OLD NEW` ([`super::shadows`]); JSON body `{"old", "new", "from"?, "records"?, "for_ms"?}` |
//! | `GET /api/jobs/{id}/shadow` | the job's latest shadow run: running, or its report |
//! | `GET /api/savepoints[?job=ID]` | `host savepoints` |
//! | `GET /metrics` | every running job's metrics, Prometheus text format |

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::shadows::ShadowRequest;
use super::{Shared, prometheus};
use crate::ids::JobId;
use crate::jobs::{self, RequestError};
use crate::store::{Store, StoreError};

/// An error as the API answers it.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// A request without the right token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer TOKEN`, or open the address \
             `host serve` printed",
        )
    }

    /// A request with the token in its address, which only the dashboard's page takes.
    pub fn token_in_address() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "`?token=` is taken by `GET /` (the dashboard) only: send `Authorization: Bearer \
             TOKEN`",
        )
    }

    /// A request refused whatever its token: addressed to another host, or from another site.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// A save or stop of `job` while another is in flight.
    fn busy(job: &JobId) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            format!("a save or stop of {job} is already in flight; try again once it is done"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        let status = match &e {
            RequestError::NoSuchJob(_) => StatusCode::NOT_FOUND,
            RequestError::NotRunning { .. } | RequestError::Refused { .. } => StatusCode::CONFLICT,
            RequestError::Unexpected { .. }
            | RequestError::Control(_)
            | RequestError::StillHeld { .. } => StatusCode::BAD_GATEWAY,
            RequestError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

type Answer = Result<Json<Value>, ApiError>;

/// The API's routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/jobs", get(all_jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/jobs/{id}/metrics", get(job_metrics))
        .route("/api/jobs/{id}/checkpoints", get(checkpoints))
        .route("/api/jobs/{id}/save", post(save))
        .route("/api/jobs/{id}/stop", post(stop))
        .route("/api/jobs/{id}/shadow", post(shadow).get(latest_shadow))
        .route("/api/savepoints", get(savepoints))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
}

/// Runs blocking state-folder and control-socket work off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Store,
    work: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .unwrap_or_else(|e| {
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            ))
        })
}

fn job_id(id: &str) -> Result<JobId, ApiError> {
    id.parse()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad job id `{id}`: {e}")))
}

fn to_json(value: impl serde::Serialize) -> Answer {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn all_jobs(State(shared): State<Shared>) -> Answer {
    to_json(blocking(&shared.store, |store| Ok(jobs::list(store)?)).await?)
}

async fn job(State(shared): State<Shared>, Path(id): Path<String>) -> Answer {
    let job = job_id(&id)?;
    let (row, sample) = blocking(&shared.store, move |store| {
        let rows = jobs::list(store)?;
        let row = rows.into_iter().find(|r| r.job == job);
        let row = row.ok_or_else(|| ApiError::from(RequestError::NoSuchJob(job.clone())))?;
        let sample = row
            .running
            .then(|| jobs::metrics(store, &job).ok())
            .flatten();
        Ok((row, sample))
    })
    .await?;
    let mut value = serde_json::to_value(row).expect("rows serialize");
    value["metrics"] = serde_json::to_value(sample).expect("samples serialize");
    Ok(Json(value))
}

async fn job_metrics(State(shared): State<Shared>, Path(id): Path<String>) -> Answer {
    let job = job_id(&id)?;
    to_json(blocking(&shared.store, move |store| Ok(jobs::metrics(store, &job)?)).await?)
}

async fn checkpoints(State(shared): State<Shared>, Path(id): Path<String>) -> Answer {
    let job = job_id(&id)?;
    let sample = blocking(&shared.store, move |store| Ok(jobs::metrics(store, &job)?)).await?;
    to_json(sample.checkpoints)
}

/// Runs a save or stop of `job` off the async threads, refused while another is in flight.
/// The job's slot is held until the work ends, even if the client goes away before that.
async fn acting<T: Send + 'static>(
    shared: &Shared,
    job: JobId,
    work: impl FnOnce(&Store, &JobId) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let claim = shared
        .in_flight
        .claim(&job)
        .ok_or_else(|| ApiError::busy(&job))?;
    blocking(&shared.store, move |store| {
        let _claim = claim;
        work(store, &job)
    })
    .await
}

async fn save(State(shared): State<Shared>, Path(id): Path<String>) -> Answer {
    let job = job_id(&id)?;
    to_json(
        acting(&shared, job, |store, job| {
            Ok(jobs::save(store, job, false)?)
        })
        .await?,
    )
}

#[derive(Deserialize)]
struct StopQuery {
    #[serde(default)]
    save: bool,
}

async fn stop(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    query: Result<Query<StopQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let job = job_id(&id)?;
    let Query(StopQuery { save }) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let stopped = job.clone();
    let saved = acting(&shared, job, move |store, job| match save {
        true => Ok(Some(jobs::save(store, job, true)?)),
        false => Ok(jobs::cancel(store, job).map(|()| None)?),
    })
    .await?;
    Ok(Json(json!({ "stopped": stopped, "savepoint": saved })))
}

/// Runs a shadow run of the job's modules against `request`'s, from the job's latest point or
/// the one named; answers when it ends, with what it found (a run that failed is an answer
/// too: `outcome` says which).
async fn shadow(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    request: Result<Json<ShadowRequest>, axum::extract::rejection::JsonRejection>,
) -> Answer {
    let job = job_id(&id)?;
    let Json(request) = request.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let shadows = shared.shadows.clone();
    let begun = shadows.begin(&job, request).ok_or_else(|| {
        let message = format!("a shadow run of {job} is already running; try again once it ends");
        ApiError::new(StatusCode::CONFLICT, message)
    })?;
    let result = blocking(&shared.store, move |store| {
        Ok(shadows.run(store, &job, begun))
    });
    to_json(result.await?)
}

async fn latest_shadow(State(shared): State<Shared>, Path(id): Path<String>) -> Answer {
    let job = job_id(&id)?;
    let latest = shared.shadows.latest(&job).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("no shadow run of {job} yet"))
    })?;
    to_json(latest)
}

#[derive(Deserialize)]
struct PointsQuery {
    job: Option<String>,
}

async fn savepoints(
    State(shared): State<Shared>,
    query: Result<Query<PointsQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let Query(PointsQuery { job }) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let job = job.as_deref().map(job_id).transpose()?;
    let rows = blocking(&shared.store, move |store| {
        Ok(jobs::points(store, job.as_ref())?)
    });
    to_json(rows.await?)
}

async fn metrics(State(shared): State<Shared>) -> Result<Response, ApiError> {
    let (rows, samples) = blocking(&shared.store, |store| {
        let rows = jobs::list(store)?;
        let running = rows.iter().filter(|r| r.running);
        // A job that ends between the listing and the request is left out.
        let samples: Vec<_> = running
            .filter_map(|r| jobs::metrics(store, &r.job).ok())
            .collect();
        Ok((rows, samples))
    })
    .await?;
    let text = prometheus::encode(&rows, &samples);
    Ok(([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], text).into_response())
}
