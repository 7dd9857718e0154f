"""The OpenAPI 3.0 document of the scoring API, built from the served model's input contract."""

from __future__ import annotations

from typing import Any

from persona.serving.contract import InputSpec
from persona.serving.invocations import ON_INVALID
from persona.serving.payload import ARROW_STREAM, PARQUET, X_PARQUET

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["kind", "message", "details"],
            "properties": {
                "kind": {"type": "string"},
                "message": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["kind", "field", "rows", "count", "expected", "got"],
                        "properties": {
                            "kind": {"type": "string"},
                            "field": {
                                "type": "string",
                                "nullable": True,
                                "description": "The column, header or parameter; null for the "
                                "batch as a whole.",
                            },
                            "rows": {"type": "array", "items": {"type": "integer"}},
                            "count": {"type": "integer"},
                            "expected": {"type": "string"},
                            "got": {"type": "string"},
                            "rule": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}


NOT_READY = {
    "type": "object",
    "required": ["ready", "reason"],
    "properties": {"ready": {"type": "boolean"}, "reason": {"type": "string"}},
}
RELOAD = {
    "type": "object",
    "required": ["registry_reachable", "error", "version"],
    "properties": {
        "registry_reachable": {"type": "boolean"},
        "error": {"type": "string", "nullable": True},
        "version": {"type": "string", "nullable": True},
        "workers": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _error_responses(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Malformed body or a value that breaks the model's input contract",
        401: "Missing or wrong bearer token",
        403: "Admin endpoints are disabled (no admin token configured)",
        404: "No such segmentation is served",
        406: "Unsupported Accept",
        413: "More rows (PERSONA_MAX_BATCH_ROWS) or bytes (PERSONA_MAX_BODY_BYTES) than allowed, "
        "or a compressed Arrow/Parquet body that would decode to more than 16 times its size",
        415: "Unsupported Content-Type",
        503: "No model loaded yet, or the registry did not answer",
    }
    return {
        str(s): {
            "description": text[s],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for s in statuses
    }


_BINARY_IN = {
    ARROW_STREAM: "An Apache Arrow IPC stream: one column per field of Customer (numbers as "
    "integer or floating-point types, text as string or dictionary types, a date column also "
    "as an Arrow date), nulls as Arrow nulls.",
    PARQUET: "A Parquet file with the columns of an Arrow body.",
    X_PARQUET: "The same as application/vnd.apache.parquet.",
}
_BINARY_OUT = {
    ARROW_STREAM: "An Apache Arrow IPC stream: the CSV answer's columns, typed (persona_id "
    "int64, confidence and distance float64, null when unscored; problems a list of structs).",
    PARQUET: "A Parquet file with the columns of the Arrow answer.",
    X_PARQUET: "The same as application/vnd.apache.parquet.",
}


def _binary(descriptions: dict[str, str]) -> dict[str, Any]:
    return {
        media: {"schema": {"type": "string", "format": "binary", "description": text}}
        for media, text in descriptions.items()
    }


def openapi_document(spec: InputSpec, auth: bool) -> dict[str, Any]:
    record = spec.json_schema()
    records = {"type": "array", "items": {"$ref": "#/components/schemas/Customer"}, "minItems": 1}
    columns = list(record.get("properties", {}))
    prediction = {
        "type": "object",
        "required": ["persona_id", "persona_name", "confidence", "distance"],
        "properties": {
            **(
                {
                    spec.id_column: {
                        "oneOf": [{"type": "string"}, {"type": "integer"}],
                        "nullable": True,
                    }
                }
                if spec.id_column
                else {}
            ),
            "persona_id": {"type": "integer", "nullable": True},
            "persona_name": {"type": "string", "nullable": True},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1, "nullable": True},
            "distance": {"type": "number", "minimum": 0, "nullable": True},
            "problems": {
                "type": "array",
                "description": "With on_invalid=flag: the rules this row breaks (then the "
                "persona fields are null).",
                "items": {
                    "type": "object",
                    "required": ["field", "rule", "kind"],
                    "properties": {
                        "field": {"type": "string"},
                        "rule": {"type": "string"},
                        "kind": {"type": "string"},
                    },
                },
            },
        },
        "description": "Columns named in echo follow the prediction fields.",
    }
    predict: dict[str, Any] = {
        "summary": "Persona of each customer in a batch",
        "parameters": [
            {
                "name": "on_invalid",
                "in": "query",
                "required": False,
                "description": "reject (default): a row that breaks the data contract fails the "
                "request with 400; flag: every row is answered, invalid ones unscored with "
                "their problems. The X-On-Invalid header does the same.",
                "schema": {"type": "string", "enum": list(ON_INVALID)},
            },
            {
                "name": "echo",
                "in": "query",
                "required": False,
                "description": "Comma-separated input columns to copy onto each prediction.",
                "schema": {"type": "string"},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            records,
                            {
                                "type": "object",
                                "required": ["customers"],
                                "properties": {"customers": records},
                            },
                            {
                                "type": "object",
                                "required": ["columns", "data"],
                                "properties": {
                                    "columns": {
                                        "type": "array",
                                        "items": {"type": "string", "enum": columns},
                                    },
                                    "data": {"type": "array", "items": {"type": "array"}},
                                },
                            },
                        ]
                    }
                },
                "text/csv": {"schema": {"type": "string", "description": "header row, then rows"}},
                **_binary(_BINARY_IN),
            },
        },
        "responses": {
            "200": {
                "description": "One prediction per input row, in input order",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["model", "n_rows", "predictions"],
                            "properties": {
                                "model": {
                                    "type": "object",
                                    "properties": {
                                        "name": {"type": "string"},
                                        "version": {"type": "string"},
                                    },
                                },
                                "n_rows": {"type": "integer"},
                                "ignored_columns": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                    "description": "Columns sent that are not model inputs.",
                                },
                                "predictions": {"type": "array", "items": prediction},
                            },
                        }
                    },
                    "text/csv": {"schema": {"type": "string"}},
                    **_binary(_BINARY_OUT),
                },
            },
            **_error_responses(400, *((401,) if auth else ()), 406, 413, 415, 503),
        },
    }
    if auth:
        predict["security"] = [{"bearer": []}]
    simple = {"200": {"description": "OK", "content": {"application/json": {"schema": {}}}}}
    segmentation = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "A segmentation (GET /segmentations lists them); default is the one "
        "/predict and /model serve.",
        "schema": {"type": "string"},
    }
    # Each segmentation has its own input columns (GET /segmentations/{name}/model); the body
    # takes the same shapes as /predict's.
    segmentation_predict = {
        **predict,
        "summary": "Persona of each customer in a batch, with the segmentation's model",
        "parameters": [segmentation, *predict["parameters"]],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"type": "array", "items": {"type": "object"}, "minItems": 1},
                            {"type": "object"},
                        ]
                    }
                },
                "text/csv": {"schema": {"type": "string", "description": "header row, then rows"}},
                **_binary(_BINARY_IN),
            },
        },
        "responses": {**predict["responses"], **_error_responses(404)},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "persona scoring API",
            "version": "1",
            "description": f"At most {spec.max_rows} rows per request.",
        },
        "paths": {
            "/predict": {"post": predict},
            "/segmentations": {
                "get": {
                    "summary": "Every segmentation served: its model, version and input columns",
                    "responses": simple,
                }
            },
            "/segmentations/{name}/model": {
                "get": {
                    "summary": "A segmentation's served model",
                    "parameters": [segmentation],
                    "responses": {**simple, **_error_responses(404, 503)},
                }
            },
            "/segmentations/{name}/predict": {"post": segmentation_predict},
            "/health": {"get": {"summary": "The process is alive", "responses": simple}},
            "/ready": {
                "get": {
                    "summary": "A model is loaded (and how stale the registry view is)",
                    "responses": {
                        **simple,
                        "503": {
                            "description": "No model yet, and why",
                            "content": {"application/json": {"schema": NOT_READY}},
                        },
                    },
                }
            },
            "/model": {
                "get": {
                    "summary": "Served model: version, run, personas, training metrics",
                    "responses": {**simple, **_error_responses(503)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/admin/reload": {
                "post": {
                    "summary": "Check the registry alias now",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {
                            "description": "Every worker serves the version the alias names",
                            "content": {"application/json": {"schema": RELOAD}},
                        },
                        "503": {
                            "description": "The registry did not answer, or a worker did not "
                            "follow in time",
                            "content": {"application/json": {"schema": RELOAD}},
                        },
                        **_error_responses(401, 403),
                    },
                }
            },
        },
        "components": {
            "schemas": {"Customer": record, "Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
