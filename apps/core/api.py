"""What every API answer has in common: JSON errors naming the field, and Idempotency-Key replay."""

import hashlib
import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.http import JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .exceptions import Conflict, ServiceError
from .models import IdempotencyRecord


def _flatten(detail, prefix="") -> list[dict]:
    """DRF's nested error detail as a flat list of {"field", "message"}."""
    if isinstance(detail, dict):
        errors = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            errors += _flatten(value, f"{prefix}.{name}" if prefix and name else (name or prefix))
        return errors
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return [{"field": prefix or None, "message": str(item)} for item in detail]
        errors = []
        for index, item in enumerate(detail):
            errors += _flatten(item, f"{prefix}[{index}]")
        return errors
    return [{"field": prefix or None, "message": str(detail)}]


def error_body(code: str, errors: list[dict]) -> dict:
    return {"error": code, "detail": errors[0]["message"] if errors else code, "errors": errors}


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.code, [{"field": exc.field, "message": exc.message}]), status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("too_large", [{"field": None, "message": "The request body is too large."}]),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    if isinstance(exc, exceptions.ValidationError):
        code = "invalid"
    elif not isinstance(code, str):
        code = "error"
    response.data = error_body(
        code,
        _flatten(
            response.data.get("detail", response.data)
            if isinstance(response.data, dict) and "detail" in response.data
            else response.data
        ),
    )
    return response


def json_error_view(status_code: int, code: str, message: str):
    def view(request, exception=None):
        return JsonResponse(error_body(code, [{"field": None, "message": message}]), status=status_code)

    return view


class ApiBodyLimitMiddleware:
    """Oversized API bodies get a JSON 413 before anything reads them (PITFALLS #7)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
                return JsonResponse(
                    error_body(
                        "too_large",
                        [
                            {
                                "field": None,
                                "message": (
                                    f"The request body is {length} bytes; "
                                    f"the limit is {settings.DATA_UPLOAD_MAX_MEMORY_SIZE}."
                                ),
                            }
                        ],
                    ),
                    status=413,
                )
        return self.get_response(request)


def idempotent(scope: str, request, handler) -> Response:
    """Run `handler()` once per (caller, Idempotency-Key). A repeat with the same body gets the first
    response and creates nothing; the same key with a different body is a 409."""
    key = request.headers.get("Idempotency-Key")
    if not key:
        return handler()
    if len(key) > 255:
        raise ServiceError("The Idempotency-Key header is longer than 255 characters.", field="Idempotency-Key")
    owner = f"key:{request.auth.pk}" if hasattr(request.auth, "key_digest") else f"user:{request.user.pk}"
    body_hash = hashlib.sha256(json.dumps(request.data, sort_keys=True, default=str).encode()).hexdigest()

    def replay(record):
        if record.request_hash != body_hash:
            raise Conflict(
                "This Idempotency-Key was used with a different request body.",
                field="Idempotency-Key",
                code="idempotency_key_reused",
            ) from None
        return Response(record.response_body, status=record.status_code, headers={"Idempotent-Replayed": "true"})

    existing = IdempotencyRecord.objects.filter(scope=scope, owner=owner, key=key).first()
    if existing is not None:
        return replay(existing)
    try:
        with transaction.atomic():
            response = handler()
            if response.status_code < 500:
                IdempotencyRecord.objects.create(
                    scope=scope,
                    owner=owner,
                    key=key,
                    request_hash=body_hash,
                    status_code=response.status_code,
                    response_body=response.data,
                )
    except IntegrityError:
        # A concurrent request with the same key won; answer what it answered.
        return replay(IdempotencyRecord.objects.get(scope=scope, owner=owner, key=key))
    return response


class IdCursorPagination(CursorPagination):
    """Keyset pagination, newest first: no COUNT(*) on big tables (PITFALLS #4)."""

    ordering = "-pk"
    page_size = 50


class ItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.CharField()
    id = serializers.IntegerField(required=False)
    errors = serializers.ListField(child=serializers.DictField(), required=False)


class BatchResultSerializer(serializers.Serializer):
    """The per-item report of a batch endpoint."""

    created = serializers.IntegerField(required=False)
    accepted = serializers.IntegerField(required=False)
    failed = serializers.IntegerField()
    results = ItemResultSerializer(many=True)


# Every API error has the body of `error_body`; the schema documents it on every operation, so clients (and the
# schema fuzzing in CI) know each status an operation may answer besides its successes.
ERROR_STATUSES = {
    "400": "Invalid input: `errors` names each field at fault",
    "401": "No valid API key or session",
    "403": "The key's scopes or the user's grants do not allow this",
    "404": "No such object, or not visible to the caller",
    "405": "Method not allowed",
    "409": "Conflicts with the object's current state",
    "413": "The request body is too large",
    "415": "Unsupported media type",
    "429": "Too many requests",
    "503": "A dependency (broker, database) is unavailable; retry later",
}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "A stable code, e.g. invalid, not_found, conflict"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string", "nullable": True}, "message": {"type": "string"}},
            },
        },
    },
    "required": ["error", "detail", "errors"],
}


def error_responses_hook(result, generator, request, public):
    """drf-spectacular postprocessing hook: the error responses, with their body, on every operation."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_STATUSES.items():
                responses.setdefault(code, {"description": description, "content": reference})
            batch = responses.get("207", {}).get("content", {}).get("application/json", {}).get("schema")
            if batch:  # a batch whose every item failed answers 400 with the per-item report
                responses["400"]["content"] = {
                    "application/json": {"schema": {"oneOf": [reference["application/json"]["schema"], batch]}}
                }
    return result


def batch_item_error(index: int, errors: list[tuple[str, object]]) -> dict:
    """One failed item of a batch: its index and each (field, message)."""
    return {
        "index": index,
        "status": "error",
        "errors": [{"field": field, "message": str(message)} for field, message in errors],
    }


def batch_item_invalid(index: int, prefix: str, exc: exceptions.ValidationError) -> dict:
    """A batch item its serializer refused, fields named as `<prefix>[index].<field>`."""
    detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    item = f"{prefix}[{index}]"
    return batch_item_error(
        index,
        [(item if name == "non_field_errors" else f"{item}.{name}", messages[0]) for name, messages in detail.items()],
    )
