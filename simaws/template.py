"""The synthesized stack (cdk.out), read the way CloudFormation would: intrinsic functions resolved
against the resources this simulation created, and the resources themselves created in moto.

Only the resource types the cogplane stack uses are interpreted; the rest (IAM, logs, VPC plumbing,
Auto Scaling, launch templates) get a physical id and ARN so references to them resolve, and
nothing else: what is not emulated is listed in README.md (`make sim-aws`).
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"


class TemplateError(Exception):
    """The template uses something this interpreter does not know."""


@dataclass
class Assembly:
    """One stack of a cloud assembly (cdk.out): its template and where its assets were staged."""

    outdir: Path
    stack_name: str
    template: dict[str, Any]
    assets: dict[str, Path]  # asset hash -> staged folder (file assets)

    @classmethod
    def load(cls, outdir: Path) -> Assembly:
        outdir = Path(outdir)
        manifest_path = outdir / "manifest.json"
        if not manifest_path.is_file():
            raise TemplateError(f"{outdir} holds no cloud assembly: run `make synth` first")
        manifest = json.loads(manifest_path.read_text())
        stacks = [
            (name, a)
            for name, a in manifest.get("artifacts", {}).items()
            if a.get("type") == "aws:cloudformation:stack"
        ]
        if len(stacks) != 1:
            raise TemplateError(f"expected one stack in {outdir}, found {[n for n, _ in stacks]}")
        name, artifact = stacks[0]
        props = artifact.get("properties", {})
        template = json.loads((outdir / props["templateFile"]).read_text())
        assets: dict[str, Path] = {}
        for other in manifest.get("artifacts", {}).values():
            if other.get("type") != "cdk:asset-manifest":
                continue
            asset_manifest = json.loads((outdir / other["properties"]["file"]).read_text())
            for asset_hash, asset in asset_manifest.get("files", {}).items():
                assets[asset_hash] = outdir / asset["source"]["path"]
        return cls(outdir=outdir, stack_name=props.get("stackName", name), template=template, assets=assets)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template.get("Resources", {})

    def of_type(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r.get("Type") == type_name}


@dataclass
class Physical:
    """What a deployed resource resolves to: `Ref` and its `Fn::GetAtt` attributes."""

    ref: str
    attrs: dict[str, str] = field(default_factory=dict)


def generated_secret(spec: dict[str, Any]) -> str:
    """A value for `GenerateSecretString` (the properties the stack uses)."""
    length = int(spec.get("PasswordLength", 32))
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    exclude = spec.get("ExcludeCharacters", "")
    alphabet = "".join(c for c in alphabet if c not in exclude)
    return "".join(secrets.choice(alphabet) for _ in range(length))


class Resolver:
    """CloudFormation's intrinsic functions over the physical ids known so far."""

    def __init__(
        self,
        assembly: Assembly,
        *,
        region: str = REGION,
        account: str = ACCOUNT,
        parameters: dict[str, str] | None = None,
    ):
        self.assembly = assembly
        self.region = region
        self.account = account
        self.physical: dict[str, Physical] = {}
        self.parameters = dict(parameters or {})
        self.conditions: dict[str, bool] = {}

    # --- pseudo parameters and placeholders ------------------------------------------------------
    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::StackName": self.assembly.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account}:stack/"
            f"{self.assembly.stack_name}/00000000-0000-0000-0000-000000000000",
            "AWS::NoValue": None,
        }.get(name, "")

    def placeholder(self, logical_id: str) -> Physical:
        """A resource the simulation does not create (IAM, logs, networking...): a stable id/ARN."""
        resource = self.assembly.resources[logical_id]
        service = resource["Type"].split("::")[1].lower()
        name = f"{self.assembly.stack_name}-{logical_id}"
        arn = f"arn:aws:{service}:{self.region}:{self.account}:{logical_id.lower()}/{name}"
        return Physical(ref=name, attrs={"Arn": arn})

    def get(self, logical_id: str) -> Physical:
        if logical_id not in self.physical:
            if logical_id not in self.assembly.resources:
                raise TemplateError(f"unknown resource {logical_id}")
            self.physical[logical_id] = self.placeholder(logical_id)
        return self.physical[logical_id]

    # --- intrinsic functions ------------------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            out = [self.resolve(v) for v in value]
            return [v for v in out if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.getatt(logical, attr)
            if key == "Fn::Join":
                sep, parts = arg
                return sep.join(str(p) for p in self.resolve(parts))
            if key == "Fn::Sub":
                return self.sub(arg)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = arg
                return self.resolve(text).split(sep)
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if key == "Fn::GetAZs":
                return [f"{self.region}a", f"{self.region}b"]
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by the simulation")
        out = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _NO_VALUE}

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.assembly.template.get("Parameters", {}):
            return self.parameters.get(name, self.assembly.template["Parameters"][name].get("Default", ""))
        return self.get(name).ref

    def getatt(self, logical_id: str, attr: str) -> str:
        physical = self.get(logical_id)
        if attr not in physical.attrs:
            raise TemplateError(f"Fn::GetAtt {logical_id}.{attr} is not known to the simulation")
        return physical.attrs[attr]

    def sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def one(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical, attr = name.split(".", 1)
                return self.getatt(logical, attr)
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self._evaluate(self.assembly.template.get("Conditions", {})[name]))
        return self.conditions[name]

    def _evaluate(self, expr: Any) -> Any:
        if isinstance(expr, dict) and len(expr) == 1:
            ((key, arg),) = expr.items()
            if key == "Fn::Equals":
                a, b = (self._evaluate(x) for x in arg)
                return a == b
            if key == "Fn::Not":
                return not self._evaluate(arg[0])
            if key == "Fn::And":
                return all(self._evaluate(x) for x in arg)
            if key == "Fn::Or":
                return any(self._evaluate(x) for x in arg)
            if key == "Condition":
                return self.condition(arg)
        return self.resolve(expr)


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()
