"""The ReasoningRun CustomResourceDefinition, generated from the pipeline's spec models.

The pydantic models are the single source: their JSON schema becomes a structural OpenAPI v3 schema
(references inlined, optionals made nullable, descriptions kept so `kubectl explain` shows them), their
default factories become schema defaults (the API server fills them in; the operator never writes them
into a spec), and the models' cross-field checks are restated as CEL rules with messages naming the field,
so the API server refuses a bad run before any controller sees it.

`python -m reasoning_operator.crd [OUT_DIR]` (`make crds`) writes crds/reasoning.dev_reasoningruns.yaml,
and the Helm chart's copy in charts/reasoning-operator/crds/ beside it.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from reasoning_pipeline.spec import (
    API_GROUP,
    API_VERSION,
    DIFFICULTIES,
    KIND,
    STAGE_ORDER,
    SUBSET_FORMATS,
    SUBSETS,
    ReasoningRunSpec,
    wire_section,
)

PLURAL = "reasoningruns"
SHORT_NAMES = ["rr"]
CRD_FILE = f"{API_GROUP}_{PLURAL}.yaml"
CHART_CRDS = Path("charts") / "reasoning-operator" / "crds"
DROPPED_KEYWORDS = {"title", "additionalProperties", "$defs"}

# Lists whose items are addressed by name: the API server then keeps names unique and merges by name.
LISTS_KEYED_BY_NAME = {"nodePools", "sources", "benchmarks"}
# CEL cost estimation needs bounds on everything a rule iterates.
MAX_ITEMS = {
    "nodePools": 16,
    "sources": 64,
    "benchmarks": 16,
    "tolerations": 16,
    "subsets": 32,
    "difficulties": 8,
}


def _world_size(training: str) -> str:
    per_node = (
        f"(has({training}.processesPerNode) ? {training}.processesPerNode : "
        f"({training}.gpusPerNode > 0 ? {training}.gpusPerNode : 1))"
    )
    return f"{training}.nodes * {per_node}"


def _pool_has(pool_field: str) -> str:
    return f"self.nodePools.exists(p, p.name == {pool_field})"


def _fits_context(sampling: str, server: str) -> str:
    return f"!has({server}.maxModelLen) || {sampling}.maxTokens <= {server}.maxModelLen"


def _divides_pool_gpus(server: str) -> str:
    return (
        f"self.nodePools.all(p, p.name != {server}.nodePool || p.gpusPerNode == 0 || "
        f"p.gpusPerNode % {server}.tensorParallelSize == 0)"
    )


def _needs(stage_field: str, previous_field: str, input_field: str) -> str:
    return (
        f"!self.{stage_field}.enabled || self.{previous_field}.enabled || has(self.{stage_field}.inputPath)"
    )


# (rule, message, fieldPath) on spec. Every message names the field a user must change.
SPEC_RULES: list[tuple[str, str, str]] = [
    (
        f"self.training.globalBatchSize == self.training.microBatchSize * "
        f"self.training.gradientAccumulationSteps * {_world_size('self.training')}",
        "training.globalBatchSize must equal microBatchSize × gradientAccumulationSteps × world size "
        "(nodes × processesPerNode, or × gpusPerNode)",
        ".training.globalBatchSize",
    ),
    (
        _pool_has("self.training.nodePool"),
        "training.nodePool must name one of spec.nodePools",
        ".training.nodePool",
    ),
    (
        _pool_has("self.generation.teacher.nodePool"),
        "generation.teacher.nodePool must name one of spec.nodePools",
        ".generation.teacher.nodePool",
    ),
    (
        _pool_has("self.evaluation.server.nodePool"),
        "evaluation.server.nodePool must name one of spec.nodePools",
        ".evaluation.server.nodePool",
    ),
    (
        f"!has(self.driverNodePool) || {_pool_has('self.driverNodePool')}",
        "driverNodePool must name one of spec.nodePools",
        ".driverNodePool",
    ),
    (
        "self.nodePools.all(p, p.name != self.generation.teacher.nodePool || p.gpusPerNode == 0 || "
        "self.generation.teacher.tensorParallelSize <= p.gpusPerNode)",
        "generation.teacher.tensorParallelSize must not exceed the gpusPerNode of its node pool",
        ".generation.teacher.tensorParallelSize",
    ),
    (
        "self.nodePools.all(p, p.name != self.training.nodePool || p.gpusPerNode == 0 || "
        "self.training.gpusPerNode <= p.gpusPerNode)",
        "training.gpusPerNode must not exceed the gpusPerNode of its node pool",
        ".training.gpusPerNode",
    ),
    (
        _fits_context("self.generation.sampling", "self.generation.teacher"),
        "generation.sampling.maxTokens must not exceed generation.teacher.maxModelLen: vLLM refuses a "
        "request for more than its context",
        ".generation.sampling.maxTokens",
    ),
    (
        _fits_context("self.evaluation.sampling", "self.evaluation.server"),
        "evaluation.sampling.maxTokens must not exceed evaluation.server.maxModelLen: vLLM refuses a "
        "request for more than its context",
        ".evaluation.sampling.maxTokens",
    ),
    (
        "!has(self.evaluation.server.maxModelLen) || self.evaluation.benchmarks.all(b, !has(b.sampling) || "
        "b.sampling.maxTokens <= self.evaluation.server.maxModelLen)",
        "evaluation.benchmarks[].sampling.maxTokens must not exceed evaluation.server.maxModelLen: vLLM "
        "refuses a request for more than its context",
        ".evaluation.benchmarks",
    ),
    (
        _divides_pool_gpus("self.generation.teacher"),
        "generation.teacher.tensorParallelSize must divide the gpusPerNode of its node pool",
        ".generation.teacher.tensorParallelSize",
    ),
    (
        _divides_pool_gpus("self.evaluation.server"),
        "evaluation.server.tensorParallelSize must divide the gpusPerNode of its node pool",
        ".evaluation.server.tensorParallelSize",
    ),
    (
        "!self.training.enabled || self.training.nodes == 1 || self.storage.accessMode == 'ReadWriteMany' "
        "|| has(self.storage.claimName)",
        "storage.accessMode must be ReadWriteMany when training.nodes > 1: a ReadWriteOnce volume mounts on "
        "one node only",
        ".storage.accessMode",
    ),
    (
        " && ".join(
            f"(self.restartFrom.stage != '{stage.value}' || self.{wire_section(stage)}.enabled)"
            for stage in STAGE_ORDER
        ).join(["!has(self.restartFrom) || (", ")"]),
        "restartFrom.stage names a disabled stage: name an enabled one",
        ".restartFrom.stage",
    ),
    (
        "!self.data.enabled || size(self.data.sources) > 0",
        "data.sources is empty: name at least one source, or disable data",
        ".data.sources",
    ),
    (
        "!self.evaluation.enabled || size(self.evaluation.benchmarks) > 0",
        "evaluation.benchmarks is empty: name at least one benchmark, or disable evaluation",
        ".evaluation.benchmarks",
    ),
    (
        "!self.evaluation.enabled || self.training.enabled || self.evaluation.server.model != '' || "
        "has(self.evaluation.server.endpoint)",
        "evaluation.server.model is empty (the train stage's model) but training is disabled: name the model "
        "to evaluate",
        ".evaluation.server.model",
    ),
    (
        "!has(self.training.ncclEnv) || self.training.ncclEnv.all(name, name.matches('^NCCL_[A-Z0-9_]+$'))",
        "training.ncclEnv: only NCCL_* variables belong here",
        ".training.ncclEnv",
    ),
    (
        "self.sandbox.seccompProfile.type != 'RuntimeDefault' || self.sandbox.minimumIsolation == 'rlimits' "
        "|| has(self.sandbox.runtimeClassName)",
        "sandbox.minimumIsolation: under seccompProfile RuntimeDefault the sandbox reaches only the rlimits "
        "level; use a Localhost profile that admits user namespaces, a runtimeClassName, or write "
        "minimumIsolation: rlimits",
        ".sandbox.minimumIsolation",
    ),
    (
        "!has(self.sandbox.appArmorProfile) || (self.sandbox.appArmorProfile.type == 'Localhost') == "
        "has(self.sandbox.appArmorProfile.localhostProfile)",
        "sandbox.appArmorProfile.localhostProfile: give it with type Localhost, and only then",
        ".sandbox.appArmorProfile.localhostProfile",
    ),
    (
        _needs("generation", "data", "inputPath"),
        "generation is enabled but data is disabled: set generation.inputPath or enable data",
        ".generation.inputPath",
    ),
    (
        _needs("rewrite", "generation", "inputPath"),
        "rewrite is enabled but generation is disabled: set rewrite.inputPath or enable generation",
        ".rewrite.inputPath",
    ),
    (
        _needs("filter", "rewrite", "inputPath"),
        "filter is enabled but rewrite is disabled: set filter.inputPath or enable rewrite",
        ".filter.inputPath",
    ),
    (
        _needs("format", "filter", "inputPath"),
        "format is enabled but filter is disabled: set format.inputPath or enable filter",
        ".format.inputPath",
    ),
    (
        _needs("training", "format", "inputPath"),
        "training is enabled but format is disabled: set training.inputPath or enable format",
        ".training.inputPath",
    ),
]


def _one_of(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


# A default list item gets no defaults of its own (the API server checks the CRD's `default` of
# data.sources as written), so every rule on an optional field asks has() first.
SOURCE_RULES: list[tuple[str, str, str]] = [
    (
        "self.format == 'reasoning-gym' ? has(self.task) : (has(self.hubId) != has(self.path))",
        "a data source needs exactly one of hubId or path (reasoning-gym sources need task instead)",
        ".path",
    ),
    (
        f"!has(self.subsets) || size(self.subsets) == 0 || self.format in {_one_of(SUBSET_FORMATS)}",
        f"data.sources[].subsets apply to {' and '.join(SUBSET_FORMATS)} sources only",
        ".subsets",
    ),
    (
        "!has(self.difficulties) || size(self.difficulties) == 0 "
        f"|| self.format in {_one_of(tuple(DIFFICULTIES))}",
        f"data.sources[].difficulties apply to {' and '.join(DIFFICULTIES)} sources only",
        ".difficulties",
    ),
    *(
        (
            f"!has(self.subsets) || self.format != '{source_format}' "
            f"|| self.subsets.all(s, s in {_one_of(values)})",
            f"data.sources[].subsets of a {source_format} source are among: {', '.join(values)}",
            ".subsets",
        )
        for source_format, values in SUBSETS.items()
    ),
    *(
        (
            f"!has(self.difficulties) || self.format != '{source_format}' "
            f"|| self.difficulties.all(d, d in {_one_of(values)})",
            f"data.sources[].difficulties of a {source_format} source are among: {', '.join(values)}",
            ".difficulties",
        )
        for source_format, values in DIFFICULTIES.items()
    ),
]
TOLERATION_RULES: list[tuple[str, str, str]] = [
    (
        "self.operator != 'Exists' || !has(self.value)",
        "nodePools[].tolerations[].value must be empty with operator Exists",
        ".value",
    ),
    (
        "self.operator == 'Exists' || has(self.key)",
        "nodePools[].tolerations[].key is needed with operator Equal (only Exists matches every key)",
        ".key",
    ),
]
# the run name becomes part of Service names and the value of every child's run label
RUN_NAME_RULE = (
    "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63",
    "metadata.name must be at most 63 lower-case letters, digits and '-' (no dots): it names Services and "
    "labels the run's children",
    "",  # a fieldPath must name a property of the schema, and metadata has none there
)

# Rules on the whole object: what may not change once the run has started.
STARTED = "has(oldSelf.status) && has(oldSelf.status.phase) && oldSelf.status.phase != 'Pending'"
IMMUTABLE_ONCE_STARTED = ["storage", "data", "generation", "rewrite", "filter", "format", "training"]
ROOT_RULES: list[tuple[str, str, str]] = [
    RUN_NAME_RULE,
    *(
        (
            f"!({STARTED}) || self.spec.{section} == oldSelf.spec.{section}",
            f"spec.{section} cannot change once the run has started (create a new run instead)",
            f".spec.{section}",
        )
        for section in IMMUTABLE_ONCE_STARTED
    ),
]


def _validations(rules: list[tuple[str, str, str]]) -> list[dict[str, str]]:
    return [
        {"rule": rule, "message": message, **({"fieldPath": path} if path else {})}
        for rule, message, path in rules
    ]


# ------------------------------------------------------------------------------------- JSON schema → CRD
def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"a union of several types cannot be a structural schema: {node['anyOf']}")
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        return {**_structural({**options[0], **outer}, defs), "nullable": True}
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED_KEYWORDS:
            continue
        if key == "const":
            result["enum"] = [value]
        elif key == "exclusiveMinimum":  # JSON Schema 2020 spells it as a number, OpenAPI 3.0 as a flag
            result["minimum"] = value
            result["exclusiveMinimum"] = True
        elif key == "exclusiveMaximum":
            result["maximum"] = value
            result["exclusiveMaximum"] = True
        elif key == "properties":
            result["properties"] = {name: _structural(child, defs) for name, child in value.items()}
        elif key == "items":
            result["items"] = _structural(value, defs)
        else:
            result[key] = value
    if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        result["additionalProperties"] = _structural(node["additionalProperties"], defs)
    if result.get("default") is None:
        result.pop("default", None)  # `default: null` on a nullable field says nothing
    return result


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the pydantic model inside an annotation, whether it is a list of them)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for argument in typing.get_args(annotation):
            model, is_list = _model_of(argument)
            if model is not None:
                return model, is_list
        return None, False
    if origin is list:
        model, _ = _model_of(typing.get_args(annotation)[0])
        return model, model is not None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, mode="json", exclude_defaults=True)
    if isinstance(value, list):
        return [_dump(item) for item in value]
    return value


def _annotate(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Defaults from default factories, list keys and bounds, recursively along the models."""
    for name, field in model.model_fields.items():
        alias = field.alias or name
        prop = schema["properties"][alias]
        if field.default_factory is not None:
            prop["default"] = _dump(field.default_factory())  # type: ignore[call-arg]
        if alias in MAX_ITEMS and prop.get("type") == "array":
            prop["maxItems"] = MAX_ITEMS[alias]
        if alias in LISTS_KEYED_BY_NAME:
            prop["x-kubernetes-list-type"] = "map"
            prop["x-kubernetes-list-map-keys"] = ["name"]
        nested, is_list = _model_of(field.annotation)
        if nested is not None:
            _annotate(prop["items"] if is_list else prop, nested)


def spec_schema() -> dict[str, Any]:
    document = ReasoningRunSpec.model_json_schema(by_alias=True)
    schema = _structural(document, document.get("$defs", {}))
    _annotate(schema, ReasoningRunSpec)
    schema["x-kubernetes-validations"] = _validations(SPEC_RULES)
    schema["properties"]["data"]["properties"]["sources"]["items"]["x-kubernetes-validations"] = _validations(
        SOURCE_RULES
    )
    tolerations = schema["properties"]["nodePools"]["items"]["properties"]["tolerations"]["items"]
    tolerations["x-kubernetes-validations"] = _validations(TOLERATION_RULES)
    return schema


def status_schema() -> dict[str, Any]:
    """The operator owns status: the fields rules and printer columns read are typed, the rest is open."""
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "type": "object",
        "properties": {
            "phase": {"type": "string", "enum": ["Pending", "Running", "Succeeded", "Failed", "Suspended"]},
            "currentStage": {"type": "string"},
            "progress": {"type": "string", "description": "Stages succeeded / stages enabled."},
            "observedGeneration": {"type": "integer", "format": "int64"},
            "cost": open_object,
            "estimate": open_object,
            "results": open_object,
            "stages": {"type": "array", "items": open_object},
            "conditions": {"type": "array", "items": open_object},
        },
        "x-kubernetes-preserve-unknown-fields": True,
    }


RUN_DESCRIPTION = (
    "A whole Sky-T1-style recipe (teacher generation, rewrite, rejection sampling, SFT dataset, fine-tune, "
    "evaluation), run stage by stage."
)
PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Stage", "type": "string", "jsonPath": ".status.currentStage"},
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progress",
        "description": "stages done/enabled",
    },
    {
        "name": "Estimated",
        "type": "string",
        "jsonPath": ".status.estimate.totalUSD",
        "description": "USD the pre-flight estimate gives the whole run",
    },
    {"name": "Spent", "type": "string", "jsonPath": ".status.cost.spentUSD", "description": "USD so far"},
    {"name": "Budget", "type": "number", "jsonPath": ".spec.budgetUsd", "description": "USD at most"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def custom_resource_definition() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": SHORT_NAMES,
                "categories": ["all"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": RUN_DESCRIPTION,
                            # `spec: {}` is a run with the recipe's defaults; no spec at all is a mistake
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                            "x-kubernetes-validations": _validations(ROOT_RULES),
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = (
        "# Generated by `make crds` (python -m reasoning_operator.crd) from the spec models. Do not edit.\n"
    )
    return header + yaml.safe_dump(custom_resource_definition(), sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    out_dir = Path(arguments[0] if arguments else "crds")
    targets = [out_dir]
    # the repository's crds/ sits beside the Helm chart, which ships the same file: one generator, two copies
    chart_crds = out_dir.parent / CHART_CRDS
    if chart_crds.parent.is_dir():
        targets.append(chart_crds)
    text = render()
    for folder in targets:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CRD_FILE).write_text(text)
        print(folder / CRD_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
