"""Hardware SKUs: the one list the API (GET /v1/hardware, models' and deployments' `hardware`) and
the CDK app (infra/: one ECS capacity provider per GPU SKU) both read.

Every GPU SKU runs on a one-GPU EC2 instance type when deployed; `cpu` runs on Fargate (deployed)
or on this machine (`make up`, which offers only `cpu`)."""

from __future__ import annotations

from dataclasses import dataclass

CPU = "cpu"


@dataclass(frozen=True)
class Sku:
    sku: str
    name: str  # as GET /v1/hardware shows it
    instance_type: str | None = None  # EC2 instance type of a GPU SKU (deployed); None for cpu


SKUS: tuple[Sku, ...] = (
    Sku(CPU, "CPU"),
    Sku("gpu-t4", "Nvidia T4 GPU", "g4dn.xlarge"),  # 1x T4 16 GB, 4 vCPU, 16 GiB
    Sku("gpu-a10g", "Nvidia A10G GPU", "g5.xlarge"),  # 1x A10G 24 GB, 4 vCPU, 16 GiB
    Sku("gpu-l4", "Nvidia L4 GPU", "g6.xlarge"),  # 1x L4 24 GB, 4 vCPU, 16 GiB
    Sku("gpu-l40s", "Nvidia L40S GPU", "g6e.xlarge"),  # 1x L40S 48 GB, 4 vCPU, 32 GiB
)


def deployed() -> dict[str, str]:
    """SKU -> name of every SKU a deployed stack offers."""
    return {s.sku: s.name for s in SKUS}


def local() -> dict[str, str]:
    """SKU -> name of what one machine offers: its CPU."""
    return {s.sku: s.name for s in SKUS if s.sku == CPU}


def gpu_instance_types() -> dict[str, str]:
    """GPU SKU -> EC2 instance type (the CDK app's default map)."""
    return {s.sku: s.instance_type for s in SKUS if s.instance_type is not None}
