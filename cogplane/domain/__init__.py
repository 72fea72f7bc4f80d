"""The pure domain: entities, the prediction status machine, ids and domain errors.

Nothing here imports boto3, FastAPI, httpx or reads the environment.
"""

from cogplane.domain.entities import (
    Account,
    Deployment,
    File,
    Job,
    Model,
    OutboxEvent,
    Page,
    Prediction,
    Runner,
    Version,
)
from cogplane.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InputValidationError,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)
from cogplane.domain.ids import new_prediction_id, new_token, version_id_for
from cogplane.domain.status import TERMINAL, Status, can_transition

__all__ = [
    "Account",
    "Conflict",
    "Deployment",
    "DomainError",
    "File",
    "Forbidden",
    "InputValidationError",
    "InvalidRequest",
    "Job",
    "Model",
    "NotFound",
    "OutboxEvent",
    "Page",
    "Prediction",
    "Runner",
    "Status",
    "TERMINAL",
    "Unauthenticated",
    "Version",
    "can_transition",
    "new_prediction_id",
    "new_token",
    "version_id_for",
]
