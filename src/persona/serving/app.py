"""The scoring API's app factory: batch persona scoring over HTTP with the production model.

Entry-point layer: reads settings, configures logging, owns the worker's ``ModelStore`` (which
follows the registry alias in a background thread) and maps every failure to a JSON error.
Client input never produces a 5xx; a 503 means "no model yet" and says why.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from flask import Flask, Response, g, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from persona.adapters.scoring_log import LoggedBatch, ScoringLog
from persona.data.schema import load_schema
from persona.logging_setup import configure_logging
from persona.segmentation import DEFAULT, suffixed
from persona.serving.contract import InputSpec, id_values
from persona.serving.invocations import invocations, parse_echo, parse_on_invalid
from persona.serving.model_source import ModelSource
from persona.serving.model_store import ModelStore, ServedModel, follow_alias, spec_for_model
from persona.serving.openapi import openapi_document
from persona.serving.peers import WORKERS_DIR_ENV, Peers
from persona.serving.problems import PayloadError
from persona.serving.segmentations import SegmentationSource, SegmentationStores
from persona.settings import Settings, load_settings

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CHALLENGE = {"WWW-Authenticate": "Bearer"}
RELOAD_WAIT_SECONDS = 60.0  # a worker downloads and compiles the version before it follows


class ServiceMetrics:
    """Prometheus metrics of one app; across Gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "persona_requests", "HTTP requests", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "persona_request_seconds",
            "Request latency",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter("persona_rows_scored", "Customers scored", registry=r)
        self.flagged = Counter(
            "persona_rows_flagged", "Rows answered unscored (on_invalid=flag)", registry=r
        )
        self.errors = Counter("persona_errors", "Failed requests by kind", ["kind"], registry=r)
        self.model_version = Gauge(
            "persona_model_version",
            "Registry version being served",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.log_dropped = Counter(
            "persona_scoring_log_dropped_rows",
            "Scored rows the scoring log lost (queue full or database error)",
            registry=r,
        )
        self.staleness = Gauge(
            "persona_registry_staleness_seconds",
            "Seconds since the registry last answered",
            multiprocess_mode="livemax",
            registry=r,
        )

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)
            return generate_latest(combined)
        return generate_latest(self.registry)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status=status,
        mimetype="application/json",
        headers=headers,
    )


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    g.error_kind = kind
    return _json({"error": {"kind": kind, "message": message, "details": []}}, status, headers)


def _request_body(limit: int) -> bytes:
    """The body, at most ``limit`` bytes, else 413 (RequestEntityTooLarge).

    A declared length is checked against the limit before anything is read, then read in one
    call from the server's stream (Werkzeug's reader copies it in 64 KiB steps: 0.4 ms for a
    1 MB Arrow body, against 0.08 ms); a body that ends early is a 400. A chunked body (no
    length; the server says the stream ends) is counted while read, since Werkzeug would
    silently cut it at the limit.
    """
    length = request.content_length
    if length is not None:
        if length > limit:
            raise RequestEntityTooLarge()
        try:
            body = request.environ["wsgi.input"].read(length) if length else b""
        except (OSError, ValueError) as exc:  # as Werkzeug's reader: the client went away
            raise ClientDisconnected(f"the body could not be read: {exc}") from None
        if len(body) < length:
            raise ClientDisconnected(f"the body ended after {len(body)} of {length} bytes")
        return body
    if "wsgi.input_terminated" not in request.environ:
        return request.get_data(cache=False)
    stream, parts, size = request.environ["wsgi.input"], [], 0
    while chunk := stream.read(min(1 << 20, limit + 1 - size)):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge()
    return b"".join(parts)


def _token_ok(expected: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, supplied = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip(), expected)


def create_app(
    settings: Settings | None = None,
    store: ModelStore | None = None,
    poll: bool = True,
    source: ModelSource | None = None,
    segmentation_source: SegmentationSource | None = None,
) -> Flask:
    """One app per Gunicorn worker (no preload): each worker polls the registry itself.

    The composition root: the worker's ``ModelStore`` follows ``settings.model_alias`` in
    ``source``, the MLflow registry unless another source (tests: models in memory) is given;
    the other segmentations' stores come from ``segmentation_source`` (the registry's tagged
    models unless a source is given; then only the given segmentation source, if any).
    """
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    schema = load_schema(settings.schema_path)
    if source is None and store is None:
        from persona.adapters.mlflow_serving import RegistryModelSource, RegistrySegmentations

        source = RegistryModelSource(settings.mlflow_tracking_uri, settings.model_name)
        segmentation_source = RegistrySegmentations(settings.mlflow_tracking_uri)
    if store is None:
        resolver = follow_alias(
            source,
            settings.model_alias,
            spec_for_model(schema, settings.max_batch_rows, settings.extra_columns),
        )
        folder = os.environ.get(WORKERS_DIR_ENV)  # set by gunicorn.conf.py for its workers
        store = ModelStore(
            resolver,
            settings.model_poll_seconds,
            peers=Peers(Path(folder)) if folder else None,
            renames=source.persona_names,
        )
    # Another segmentation's model brings its own schema (logged with it): no fallback.
    named_spec = spec_for_model(None, settings.max_batch_rows, settings.extra_columns)

    def build_store(name: str, model_source: ModelSource) -> ModelStore:
        resolver = follow_alias(model_source, settings.model_alias, named_spec)
        return ModelStore(resolver, settings.model_poll_seconds, renames=model_source.persona_names)

    stores = SegmentationStores(
        store, segmentation_source, build_store, settings.model_poll_seconds
    )
    if poll:
        # One check before this worker takes requests, so a worker that accepts connections
        # has its model whenever the registry answers; if it does not, start anyway (503).
        store.refresh()
        store.start()
        stores.discover()
        stores.start()

    app = Flask("persona.serving")
    # Werkzeug refuses a larger Content-Length unread, and cuts a chunked body at the cap.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["persona.store"] = store
    app.extensions["persona.segmentations"] = stores
    metrics = ServiceMetrics()
    app.extensions["persona.metrics"] = metrics
    scoring_logs: dict[str, ScoringLog] = {}
    scoring_logs_lock = threading.Lock()  # request threads may meet a segmentation at once

    def scoring_log_of(segmentation: str) -> ScoringLog | None:
        """Each segmentation logs to its own table (its monitor reads it), made on first use."""
        if not settings.scoring_log:
            return None
        with scoring_logs_lock:
            return _scoring_log(segmentation)

    def _scoring_log(segmentation: str) -> ScoringLog:
        if segmentation not in scoring_logs:
            table = suffixed(settings.scoring_log_table, segmentation)
            scoring_logs[segmentation] = ScoringLog(
                settings.project_database_url, table, on_dropped=metrics.log_dropped.inc
            )
            logger.info("logging scored rows of %s to table %s", segmentation, table)
        return scoring_logs[segmentation]

    scoring_log_of(DEFAULT)

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()
        g.error_kind = None

    @app.after_request
    def _record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - g.get("started", 0.0))
        if g.get("error_kind"):
            metrics.errors.labels(g.error_kind).inc()
        served = g.get("served") or store.current
        if served is not None:
            response.headers["X-Model-Version"] = served.version
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        kind = {413: "body_too_large", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.code or 500,
            "incomplete_body" if isinstance(exc, ClientDisconnected) else "http_error",
        )
        message = exc.description or exc.name
        if exc.code == 413:
            message = (
                f"request body larger than {settings.max_body_bytes} bytes "
                "(PERSONA_MAX_BODY_BYTES); split the batch"
            )
        # Allow (on 405) and the like travel with the error, as HTTP requires.
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return _error(exc.code or 500, kind, message, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return _error(500, "internal", "internal error; it has been logged")

    @app.get("/health")
    def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/ready")
    def ready() -> Response:
        served, staleness = store.current, store.staleness_seconds()
        if staleness is not None:
            metrics.staleness.set(staleness)
        if served is None:
            reason = store.last_error or "model not loaded yet"
            return _json({"ready": False, "reason": reason}, 503)
        return _json(
            {
                "ready": True,
                "model": served.name,
                "version": served.version,
                "registry_reachable": store.last_error is None,
                "registry_error": store.last_error,
                "registry_staleness_seconds": staleness,
            }
        )

    def _unknown_segmentation(name: str) -> Response:
        known = ", ".join(n for n, _ in stores.items())
        return _error(
            404,
            "unknown_segmentation",
            f"no segmentation {name[:64]!r} is served; served: {known} (a new one is served "
            f"within {settings.model_poll_seconds:g}s of its first registered model)",
        )

    def _describe(name: str) -> Response:
        found = stores.get(name)
        if found is None:
            return _unknown_segmentation(name)
        served = found.current
        if served is None:
            return _error(503, "model_unavailable", found.last_error or "model not loaded yet")
        return _json({"segmentation": name, **served.describe()})

    @app.get("/model")
    def model_info() -> Response:
        return _describe(DEFAULT)

    @app.get("/segmentations/<name>/model")
    def segmentation_model(name: str) -> Response:
        return _describe(name)

    @app.get("/segmentations")
    def segmentation_list() -> Response:
        listed = []
        for name, found in stores.items():
            served = found.current
            entry: dict[str, Any] = {
                "name": name,
                "model": served.name if served else None,
                "version": served.version if served else None,
                "alias": settings.model_alias,
                "input": served.describe()["input"] if served else None,
                "error": None if served else (found.last_error or "model not loaded yet"),
            }
            listed.append(entry)
        # which worker answered: each Gunicorn worker finds segmentations on its own poll
        body = {"segmentations": listed, "registry_error": stores.last_error, "worker": os.getpid()}
        return _json(body)

    @app.get("/metrics")
    def metrics_text() -> Response:
        served = store.current
        if served is not None:
            metrics.model_version.set(float(served.version))
        staleness = store.staleness_seconds()
        if staleness is not None:
            metrics.staleness.set(staleness)
        return Response(metrics.exposition(), mimetype="text/plain; version=0.0.4")

    @app.get("/openapi.json")
    def openapi() -> Response:
        served = store.current
        if served is not None:
            spec = served.spec
        else:  # before the first model: the contract of the configured schema
            spec = InputSpec.from_schema(
                schema, settings.max_batch_rows, extra_columns=settings.extra_columns
            )
        return _json(openapi_document(spec, auth=bool(settings.api_token)))

    @app.post("/predict")
    def predict() -> Response:
        return _predict_in(DEFAULT)

    @app.post("/segmentations/<name>/predict")
    def segmentation_predict(name: str) -> Response:
        return _predict_in(name)

    def _predict_in(name: str) -> Response:
        if settings.api_token and not _token_ok(settings.api_token):
            return _error(401, "unauthorized", "a valid bearer token is required", CHALLENGE)
        found = stores.get(name)
        if found is None:
            return _unknown_segmentation(name)
        with found.use() as served:  # kept even if a swap happens now; the swap waits for it
            if served is None:
                reason = found.last_error or "model not loaded yet"
                return _error(503, "model_unavailable", reason)
            g.served = served
            return _predict(served, scoring_log_of(name))

    def _predict(served: ServedModel, scoring_log: ScoringLog | None) -> Response:
        try:
            answer = invocations(
                served,
                _request_body(settings.max_body_bytes),
                request.content_type,
                request.headers.get("Accept"),
                parse_on_invalid(
                    request.args.get("on_invalid") or request.headers.get("X-On-Invalid")
                ),
                parse_echo(request.args.get("echo")),
            )
        except PayloadError as exc:
            g.error_kind = exc.kind
            return _json(exc.to_dict(), exc.status)
        metrics.rows.inc(answer.scored.n_rows)
        if answer.n_flagged:
            metrics.flagged.inc(answer.n_flagged)
        if scoring_log is not None and answer.scored.n_rows:
            batch, scores = answer.scored, answer.scores
            logged = LoggedBatch(
                datetime.now(UTC),
                served.name,
                served.version,
                id_values(batch.ids),
                served.spec.numeric,
                batch.numeric,
                served.spec.categorical,
                batch.categorical,
                scores[0],
                scores[1],
            )
            scoring_log.submit(logged)
        headers = {}
        if answer.ignored_columns:
            headers["X-Ignored-Columns"] = ",".join(answer.ignored_columns)
        return Response(answer.body, mimetype=answer.media_type, headers=headers)

    @app.post("/admin/reload")
    def reload() -> Response:
        if not settings.admin_token:
            return _error(403, "admin_disabled", "set PERSONA_ADMIN_TOKEN to enable /admin/*")
        if not _token_ok(settings.admin_token):
            return _error(401, "unauthorized", "a valid admin bearer token is required", CHALLENGE)
        ok = store.refresh()
        others = stores.refresh_all()
        served = store.current
        body: dict[str, Any] = {
            "registry_reachable": ok,
            "error": store.last_error,
            "version": served.version if served else None,
            "segmentations": {
                name: found.current.version if found.current else None
                for name, found in stores.items()
            },
        }
        if not others:
            body["segmentations_error"] = stores.last_error or "a segmentation did not load"
        if ok and served is not None and store.peers is not None:
            # the other workers follow within a fraction of a second; answer once they have
            store.peers.publish(served.version)
            serving = store.peers.wait_for(
                served.version, settings.scoring_workers, RELOAD_WAIT_SECONDS
            )
            body["workers"] = {str(pid): version for pid, version in sorted(serving.items())}
            if any(version != served.version for version in serving.values()):
                ok = False
                body["error"] = f"not every worker serves v{served.version} yet"
        return _json(body, 200 if ok else 503)

    return app
