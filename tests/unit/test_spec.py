"""The ReasoningRun spec: the recipe's numbers as defaults, and bad specs refused naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from reasoning_pipeline.spec import (
    ReasoningRun,
    ReasoningRunSpec,
    SpecError,
    Stage,
    describe_validation_error,
    load_run,
)

from tests.support.invalid_runs import INVALID_NAMES, REFUSED_BEFORE_RUN_TIME

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_defaults_are_the_sky_t1_recipe() -> None:
    spec = ReasoningRunSpec()
    assert spec.generation.teacher.model == "Qwen/QwQ-32B-Preview"
    assert spec.generation.teacher.tensor_parallel_size == 8
    assert (spec.generation.sampling.temperature, spec.generation.sampling.max_tokens) == (0.7, 16384)
    assert spec.rewrite.model == "gpt-4o-mini"
    training = spec.training
    assert training.base_model == "Qwen/Qwen2.5-32B-Instruct"
    assert (training.micro_batch_size, training.gradient_accumulation_steps, training.world_size) == (
        1,
        12,
        8,
    )
    assert training.global_batch_size == 96
    assert (training.learning_rate, training.epochs, training.cutoff_len) == (1e-5, 3, 16384)
    assert (training.deepspeed.zero_stage, training.deepspeed.offload_optimizer) == (3, "cpu")
    assert spec.pool("h100").gpu_hour_usd == 2.96
    assert [b.name for b in spec.evaluation.benchmarks] == [
        "math500",
        "aime24",
        "gpqa-diamond",
        "livecodebench",
    ]
    assert spec.evaluation.sampling.seed == 41
    assert [s.value for s in Stage] == [
        "data",
        "generate",
        "rewrite",
        "filter",
        "format",
        "train",
        "evaluate",
    ]


def test_the_full_recipe_example_declares_the_defaults() -> None:
    run = load_run(EXAMPLES / "sky-t1-32b-preview.yaml")
    defaults = ReasoningRunSpec()
    assert run.metadata.name == "sky-t1-32b-preview"
    for section in (
        "storage",
        "node_pools",
        "data",
        "generation",
        "filter",
        "format",
        "training",
        "evaluation",
    ):
        assert getattr(run.spec, section) == getattr(defaults, section), section
    assert run.spec.rewrite.api_key_secret is not None


def test_the_full_recipe_example_has_recipe_mds_published_numbers() -> None:
    """shared/RECIPE.md, section by section, against examples/sky-t1-32b-preview.yaml."""
    spec = load_run(EXAMPLES / "sky-t1-32b-preview.yaml").spec
    pools = {
        s.name: (s.hub_id, s.split, s.subsets, s.difficulties, s.first, s.limit) for s in spec.data.sources
    }
    numina = "AI-MO/NuminaMath-CoT"
    assert pools == {
        "numina-amc-aime": (numina, "train", ["amc_aime"], [], None, None),
        "numina-math": (numina, "train", ["math"], [], None, None),
        "numina-olympiads": (numina, "train", ["olympiads"], [], 20000, None),  # "first 20,000"
        "apps": ("codeparrot/apps", "test", [], [], None, None),
        "taco": ("BAAI/TACO", "train", [], ["MEDIUM"], None, None),
        "taco-test": ("BAAI/TACO", "test", [], [], None, None),
        "still2": ("RUC-AIBOX/long_form_thought_data_5k", "train", [], [], None, None),
    }
    assert spec.data.deduplicate
    generation = spec.generation
    assert (generation.teacher.model, generation.teacher.engine, generation.teacher.tensor_parallel_size) == (
        "Qwen/QwQ-32B-Preview",
        "vllm",
        8,
    )
    sampling = generation.sampling
    assert (sampling.temperature, sampling.max_tokens, sampling.samples_per_prompt) == (0.7, 16384, 1)
    assert (spec.rewrite.model, spec.rewrite.temperature, spec.rewrite.max_tokens) == (
        "gpt-4o-mini",
        0.7,
        16384,
    )
    code = spec.filter.code
    assert (spec.filter.math.timeout_seconds, code.test_timeout_seconds, code.problem_timeout_seconds) == (
        5,
        4,
        10,
    )
    training = spec.training
    assert (training.base_model, training.cutoff_len, training.precision) == (
        "Qwen/Qwen2.5-32B-Instruct",
        16384,
        "bf16",
    )
    assert (training.micro_batch_size, training.gradient_accumulation_steps, training.global_batch_size) == (
        1,
        12,
        96,
    )
    assert (training.learning_rate, training.lr_scheduler, training.warmup_ratio, training.epochs) == (
        1e-5,
        "cosine",
        0.1,
        3,
    )
    assert training.save_steps == 100
    deepspeed = training.deepspeed
    assert (deepspeed.zero_stage, deepspeed.offload_optimizer, deepspeed.offload_parameters) == (
        3,
        "cpu",
        "cpu",
    )
    assert spec.pool("h100").gpu_hour_usd == 2.96
    evaluation = spec.evaluation
    greedy = (evaluation.sampling.temperature, evaluation.sampling.max_tokens, evaluation.sampling.seed)
    assert greedy == (0.0, 32768, 41)
    assert (evaluation.server.dtype, evaluation.code_timeout_seconds) == ("float32", 6)
    sampled = {b.name: b.sampling for b in evaluation.benchmarks if b.sampling is not None}
    assert {name: (s.temperature, s.max_tokens, s.seed) for name, s in sampled.items()} == {
        "aime24": (0.7, 32768, 41),
        "gpqa-diamond": (0.7, 32768, 41),
    }


def test_the_tiny_example_is_a_cpu_run_with_the_stand_in() -> None:
    run = load_run(EXAMPLES / "tiny.yaml")
    assert run.spec.training.world_size == 2
    assert run.spec.rewrite.stand_in
    assert {pool.gpus_per_node for pool in run.spec.node_pools} == {0}


def manifest(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "reasoning.dev/v1alpha1",
        "kind": "ReasoningRun",
        "metadata": {"name": "r"},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {"training": {"globalBatchSize": 100}},
            "training.globalBatchSize (100) must equal microBatchSize (1) × gradientAccumulationSteps (12) × "
            "world size (8) = 96",
            id="batch-does-not-divide",
        ),
        pytest.param(
            {"data": {"enabled": False}},
            "generate is enabled but data is disabled: give generation.inputPath or enable data",
            id="stage-needs-earlier-output",
        ),
        pytest.param(
            {"training": {"nodePool": "a100"}},
            "training.nodePool: no node pool named 'a100' (have: cpu, h100)",
            id="unknown-pool",
        ),
        pytest.param(
            {
                "data": {
                    "sources": [
                        {"name": "a", "format": "numina", "path": "x"},
                        {"name": "a", "format": "apps", "path": "y"},
                    ]
                }
            },
            "data.sources: names must be unique, repeated: a",
            id="duplicate-source",
        ),
        pytest.param(
            {"data": {"sources": [{"name": "a", "format": "numina"}]}},
            "data source 'a': give exactly one of `hubId` or `path`",
            id="source-without-origin",
        ),
        pytest.param(
            {"generation": {"teacher": {"model": "t", "maxModelLen": 16383}}},
            "generation.sampling.maxTokens (16384) must not exceed generation.teacher.maxModelLen (16383)",
            id="teacher-context",
        ),
        pytest.param(
            {"evaluation": {"server": {"maxModelLen": 32767}, "sampling": {"maxTokens": 30000}}},
            "evaluation.benchmarks[aime24].sampling.maxTokens (32768) must not exceed "
            "evaluation.server.maxModelLen (32767)",
            id="benchmark-context",
        ),
        pytest.param(
            {"generation": {"sampling": {"temperature": 3}}},
            "spec.generation.sampling.temperature",
            id="range",
        ),
        pytest.param(
            {"training": {"learningrate": 1}},
            "spec.training.learningrate: Extra inputs are not permitted",
            id="typo",
        ),
        pytest.param(
            {"storage": {"size": "lots"}}, "spec.storage.size: String should match pattern", id="quantity"
        ),
        pytest.param(
            {"nodePools": [{"name": "GPU_pool"}]},
            "spec.nodePools.0.name: String should match pattern",
            id="name",
        ),
    ],
)
def test_bad_specs_are_refused_naming_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ReasoningRun.model_validate(manifest(spec))
    assert message in describe_validation_error(refused.value)


def test_load_run_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(SpecError, match=r"missing\.yaml: cannot read the run file"):
        load_run(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    with pytest.raises(SpecError, match=r"broken\.yaml: not valid YAML"):
        load_run(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="expected a ReasoningRun manifest"):
        load_run(listing)


@pytest.mark.parametrize(
    ("spec", "message"), [pytest.param(s, m, id=i) for i, s, m in REFUSED_BEFORE_RUN_TIME]
)
def test_what_admission_refuses_the_spec_models_refuse_too(spec: dict[str, Any], message: str) -> None:
    """The API server's verdicts are checked in tests/integration/test_reasoningrun_api.py; a local run
    (`reasoning-pipeline run`) reads the same file through the models and must refuse it as well."""
    with pytest.raises(ValidationError):
        ReasoningRunSpec.model_validate(spec)


@pytest.mark.parametrize("name", [pytest.param(n, id=i) for i, n in INVALID_NAMES])
def test_run_names_that_cannot_name_a_service_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        ReasoningRun.model_validate({"metadata": {"name": name}, "spec": {}})


def test_paths_stay_on_the_storage_and_may_say_dots() -> None:
    """What the path rule lets through: relative and absolute paths, dot files, names with dots."""
    for path in (
        "tiny-world/data/x.jsonl",
        "/data/runs/a/b.parquet",
        ".cache/x",
        "a/./b",
        "v1..2/x",
        "...",
        "a//b",
    ):
        source = {"name": "s", "format": "numina", "path": path}
        ReasoningRunSpec.model_validate({"data": {"sources": [source]}})
    for path in ("..", "../x", "a/../../b", "a/..", "~/x", "~", "a\\b", ""):
        source = {"name": "s", "format": "numina", "path": path}
        with pytest.raises(ValidationError):
            ReasoningRunSpec.model_validate({"data": {"sources": [source]}})
