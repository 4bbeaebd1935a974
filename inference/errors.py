"""Errors raised by the inference package: what went wrong, told safely to a user.

Owns the exception tree only; imports nothing. What can be wrong with an image is in
``imaging.errors``; this is what can be wrong with the model. Every message (``str(error)``)
is written for the person who runs the service or the command: it names the problem and what
to do about it, and never carries a traceback, a server path the user did not give, or raw library text
about internals. ``title`` is a short fixed label for problem documents and job records.

Exception tree, and the HTTP status the gateway maps each one to::

    InferenceError                  base class, never raised itself
    ├── WeightsError                500  missing, corrupt or mismatching generator weights
    │                               503  when the worker cannot serve the style at all
    │                                    (the service maps it; the message says how to
    │                                    supply the file)
    └── PrecisionError              --   a precision this machine cannot run (bf16 on a CPU
                                         without native bf16, or no runtime installed for it:
                                         neither the native kernels nor the `peers` extra):
                                         stops a worker or the CLI at start, never reaches a
                                         request
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base class of every error the inference package raises on purpose."""

    title = "Inference error"


class WeightsError(InferenceError):
    """Generator weights are missing, corrupt, or not the file that was expected."""

    title = "Model weights unavailable"


class PrecisionError(InferenceError):
    """The requested number format cannot run here (no units or no runtime for it), or is not a known one."""

    title = "Precision unavailable"
