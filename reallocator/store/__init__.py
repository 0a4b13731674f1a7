"""The audit store: what the service decided and why (interface, SQL implementation,
migrations, the stored plan format)."""

from reallocator.store.base import (
    AuditStore,
    IdempotencyKey,
    NewPlan,
    PlanEvent,
    PlanRecord,
    SellerAnswer,
    SellerRequest,
)
from reallocator.store.errors import (
    AlreadyExists,
    InvalidTransition,
    NotFound,
    StaleEtag,
    StoreError,
    Unavailable,
)
from reallocator.store.sql import SqlStore, default_database_url

__all__ = [
    "AlreadyExists",
    "AuditStore",
    "IdempotencyKey",
    "InvalidTransition",
    "NewPlan",
    "NotFound",
    "PlanEvent",
    "PlanRecord",
    "SellerAnswer",
    "SellerRequest",
    "SqlStore",
    "StaleEtag",
    "StoreError",
    "Unavailable",
    "default_database_url",
]
