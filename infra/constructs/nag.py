"""cdk-nag suppressions, each with its reason written where the resource is built."""

from __future__ import annotations

from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct


def suppress(
    construct: IConstruct,
    reasons: dict[str, str],
    *,
    children: bool = True,
    applies_to: dict[str, list[str]] | None = None,
) -> None:
    """Suppress AwsSolutions rules on `construct` (and its children): {rule id: why it is fine}."""
    applies_to = applies_to or {}
    NagSuppressions.add_resource_suppressions(
        construct,
        [
            NagPackSuppression(id=rule, reason=reason, applies_to=applies_to.get(rule))
            for rule, reason in reasons.items()
        ],
        apply_to_children=children,
    )
