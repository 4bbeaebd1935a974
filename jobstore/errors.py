"""Why a job failed: error codes stored in the record, each the problem slug the gateway shows."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why a job failed; the value is the problem slug the gateway shows as ``error.type``."""

    INVALID_IMAGE = "invalid-image"
    TOO_MANY_PIXELS = "too-many-pixels"
    MODEL_UNAVAILABLE = "model-unavailable"
    INFERENCE_TIMEOUT = "inference-timeout"
    INPUT_EXPIRED = "input-expired"
    WORKER_LOST = "worker-lost"
    BROKER_UNAVAILABLE = "broker-unavailable"
    INTERNAL_ERROR = "internal-error"


_ERROR_TITLES = {
    ErrorCode.INVALID_IMAGE: "Invalid image",
    ErrorCode.TOO_MANY_PIXELS: "Too many pixels",
    ErrorCode.MODEL_UNAVAILABLE: "Model unavailable",
    ErrorCode.INFERENCE_TIMEOUT: "Inference timed out",
    ErrorCode.INPUT_EXPIRED: "Input expired",
    ErrorCode.WORKER_LOST: "Worker lost",
    ErrorCode.BROKER_UNAVAILABLE: "Broker unavailable",
    ErrorCode.INTERNAL_ERROR: "Internal error",
}


def error_title(code: ErrorCode) -> str:
    return _ERROR_TITLES[code]
