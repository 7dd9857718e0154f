"""The OpenAPI 3.0 document of the scoring API, built from the served model's input contract."""

from __future__ import annotations

from typing import Any

from persona.serving.payload import InputSpec

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
                        "properties": {
                            "field": {"type": "string"},
                            "rows": {"type": "array", "items": {"type": "integer"}},
                            "count": {"type": "integer"},
                            "expected": {"type": "string"},
                            "got": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}


def _error_responses(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Malformed body or a value that breaks the model's input contract",
        401: "Missing or wrong bearer token",
        403: "Admin endpoints are disabled (no admin token configured)",
        406: "Unsupported Accept",
        413: "More rows (or bytes) than the configured limit",
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


def openapi_document(spec: InputSpec, auth: bool) -> dict[str, Any]:
    record = spec.json_schema()
    records = {"type": "array", "items": {"$ref": "#/components/schemas/Customer"}, "minItems": 1}
    columns = list(record.get("properties", {}))
    prediction = {
        "type": "object",
        "required": ["persona_id", "persona_name", "confidence", "distance"],
        "properties": {
            **(
                {spec.id_column: {"oneOf": [{"type": "string"}, {"type": "integer"}]}}
                if spec.id_column
                else {}
            ),
            "persona_id": {"type": "integer"},
            "persona_name": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "distance": {"type": "number", "minimum": 0},
        },
    }
    predict: dict[str, Any] = {
        "summary": "Persona of each customer in a batch",
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
                                "predictions": {"type": "array", "items": prediction},
                            },
                        }
                    },
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            **_error_responses(400, *((401,) if auth else ()), 406, 413, 415, 503),
        },
    }
    if auth:
        predict["security"] = [{"bearer": []}]
    simple = {"200": {"description": "OK", "content": {"application/json": {"schema": {}}}}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "persona scoring API",
            "version": "1",
            "description": f"At most {spec.max_rows} rows per request.",
        },
        "paths": {
            "/predict": {"post": predict},
            "/health": {"get": {"summary": "The process is alive", "responses": simple}},
            "/ready": {
                "get": {
                    "summary": "A model is loaded (and how stale the registry view is)",
                    "responses": {**simple, **_error_responses(503)},
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
                    "responses": {**simple, **_error_responses(401, 403, 503)},
                }
            },
        },
        "components": {
            "schemas": {"Customer": record, "Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
