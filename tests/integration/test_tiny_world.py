"""The tiny world built for real (minutes when the cache is cold, instant when warm) and its teacher served.

These need no Kubernetes cluster; they live here because they start real processes and train real models.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reasoning_pipeline.benchmarks import build_benchmark
from reasoning_pipeline.boxed import last_boxed
from reasoning_pipeline.local_server import transformers_server
from reasoning_pipeline.sources import local_rows
from reasoning_pipeline.storage import sha256_file
from reasoning_pipeline.tiny_world import TinyWorld, build_tiny_world
from reasoning_pipeline.tiny_world.build import (
    DEFAULT_RECIPE,
    Recipe,
    TinyWorldBuildError,
    world_directory,
)
from reasoning_pipeline.tiny_world.kernels import PINNED_ENVIRONMENT
from reasoning_pipeline.tiny_world.models import ModelShape
from reasoning_pipeline.tiny_world.records import TEACHER_SYSTEM_PROMPT, chat_messages

from tests.support.waiting import wait_for

# A cold build trains two models; the first test to ask for the world pays for it.
pytestmark = pytest.mark.timeout(1800)

# Seconds, not minutes: the same code path with models too small to learn anything.
SMALL_RECIPE = dataclasses.replace(
    DEFAULT_RECIPE,
    version=f"{DEFAULT_RECIPE.version}-test",
    tokenizer_problems=200,
    teacher=ModelShape(hidden_size=32, intermediate_size=64, layers=2, attention_heads=2, key_value_heads=1),
    teacher_steps=40,
    teacher_batch=4,
    student_layers=(1,),
    train_problems=30,
    held_out_problems=10,
    measured_problems=4,
    max_new_tokens=16,
    # models this small learn nothing: no floor to meet
    teacher_floor=0.0,
    student_ceiling=1.0,
)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module", autouse=True)
def offline() -> Iterator[None]:
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    if previous is None:
        del os.environ["HF_HUB_OFFLINE"]
    else:
        os.environ["HF_HUB_OFFLINE"] = previous


@pytest.fixture(scope="module")
def world(offline: None) -> TinyWorld:
    """The real tiny world, in the shared cache (~/.cache/reasoning-operator or $REASONING_CACHE_DIR)."""
    return build_tiny_world()


def test_a_warm_cache_is_reused_not_rebuilt(world: TinyWorld) -> None:
    logged: list[str] = []
    again = build_tiny_world(log=logged.append)
    assert logged == [], "a complete world in the cache must not be built again"
    assert again == world
    assert again.manifest["built_at"] == world.manifest["built_at"]


def test_the_world_lives_outside_the_repository(world: TinyWorld) -> None:
    repository = Path(__file__).resolve().parents[2]
    assert not world.root.resolve().is_relative_to(repository)
    assert world.root.name.startswith("tiny-world-")


def test_the_manifest_records_how_the_teacher_is_prompted_and_how_good_it_is(world: TinyWorld) -> None:
    manifest = world.manifest
    assert manifest["complete"] is True
    assert manifest["prompt"]["system"] == TEACHER_SYSTEM_PROMPT
    assert manifest["prompt"]["user_template"] == "Return your final response within \\boxed{}. {problem}"
    assert manifest["sampling"]["temperature"] == 0.7
    teacher, student = manifest["teacher"], manifest["student"]
    assert teacher["held_out_measured"] >= 100
    assert student["held_out_measured"] == teacher["held_out_measured"]
    assert student["parameters"] == teacher["parameters"]  # as Sky-T1's student is its teacher's size


def test_the_teacher_is_right_often_but_not_always(world: TinyWorld) -> None:
    accuracy = world.manifest["teacher"]["held_out_accuracy"]
    assert 0.25 <= accuracy <= 0.9, f"teacher at {accuracy:.0%}: the filter needs right and wrong traces"


def test_the_student_does_the_work_but_not_in_the_recipes_format(world: TinyWorld) -> None:
    student, teacher = world.manifest["student"], world.manifest["teacher"]
    # it answers with a bare number: nothing for the checker to extract until SFT teaches it \boxed{}
    assert student["held_out_boxed"] <= student["held_out_measured"] // 4
    assert student["held_out_accuracy"] <= teacher["held_out_accuracy"] / 2, "SFT would have nothing to show"
    assert student["held_out_accuracy_greedy"] <= teacher["held_out_accuracy_greedy"] / 2


def test_the_manifest_records_the_kernels_the_machine_and_the_weights(world: TinyWorld) -> None:
    machine = world.manifest["machine"]
    assert machine["environment"] == PINNED_ENVIRONMENT
    assert machine["threads"] == 2
    assert machine["torch"]
    assert machine["cpu"]
    if "avx2" in machine["cpu_flags"]:
        assert machine["cpu_capability_used"] == "AVX2"
    for role, folder in (("teacher", world.teacher), ("student", world.student)):
        assert world.manifest[role]["weights_sha256"] == sha256_file(folder / "model.safetensors")


def test_the_build_pins_its_kernels_whatever_the_caller_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    native = build_tiny_world(tmp_path / "native", recipe=SMALL_RECIPE, log=lambda line: None)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    asked_otherwise = build_tiny_world(tmp_path / "other", recipe=SMALL_RECIPE, log=lambda line: None)
    for role in ("teacher", "student"):
        assert native.manifest[role]["weights_sha256"] == asked_otherwise.manifest[role]["weights_sha256"]
    assert asked_otherwise.manifest["machine"]["environment"] == native.manifest["machine"]["environment"]


def test_a_world_below_its_floor_is_refused_naming_the_figure_and_the_floor(tmp_path: Path) -> None:
    demanding = dataclasses.replace(SMALL_RECIPE, teacher_floor=0.99)
    with pytest.raises(
        TinyWorldBuildError, match=r"teacher held-out accuracy \d+% .* below the floor of 99%"
    ):
        build_tiny_world(tmp_path, recipe=demanding, log=lambda line: None)
    assert not world_directory(tmp_path, 0, demanding).exists()
    assert not list(tmp_path.glob(".tiny-world-*.partial-*")), "a refused build leaves nothing half-made"


def test_problem_files_are_in_the_real_dataset_formats(world: TinyWorld) -> None:
    train = read_jsonl(world.train_problems)
    held_out = read_jsonl(world.held_out)
    assert len(train) == DEFAULT_RECIPE.train_problems
    assert len(held_out) == DEFAULT_RECIPE.held_out_problems
    for record in train:
        assert set(record) == {"problem", "solution", "messages", "source"}
        assert last_boxed(record["solution"]) is not None
        assert [message["role"] for message in record["messages"]] == ["user", "assistant"]
    for record in held_out:
        assert set(record) == {"problem", "solution", "answer", "subject", "level", "unique_id"}
        assert last_boxed(record["solution"]) == record["answer"]
    assert len({record["unique_id"] for record in held_out}) == len(held_out)
    # the first line of every trace restates the operation, whatever the wording of the problem
    operations = {record["solution"].splitlines()[0] for record in held_out}
    assert operations.isdisjoint(record["solution"].splitlines()[0] for record in train)


def test_the_code_problems_are_livecodebench_rows_the_benchmark_loader_reads(world: TinyWorld) -> None:
    path = world.root / world.manifest["paths"]["livecodebench"]
    rows = read_jsonl(path)
    assert len(rows) == world.manifest["data"]["livecodebench"]["records"] == DEFAULT_RECIPE.code_problems
    for row in rows:
        assert set(row) == {
            "question_title",
            "question_content",
            "platform",
            "question_id",
            "contest_id",
            "contest_date",
            "starter_code",
            "difficulty",
            "public_test_cases",
            "private_test_cases",
            "metadata",
        }
    benchmark = build_benchmark("livecodebench", list(local_rows(path)))
    assert len(benchmark.items) == DEFAULT_RECIPE.code_problems
    apply = {"+": operator.add, "-": operator.sub, "*": operator.mul}
    for item, row in zip(benchmark.items, rows, strict=True):
        # one public case, three hidden ones decoded from the dataset's own encoding, all of what it asks
        symbol = row["question_content"].rsplit("print A ", 1)[1][0]
        tests = item.tests or {}
        assert len(tests["inputs"]) == len(tests["outputs"]) == 4
        for given, expected in zip(tests["inputs"], tests["outputs"], strict=True):
            left, right = map(int, given.split())
            assert expected == f"{apply[symbol](left, right)}\n"


def test_models_load_with_the_auto_classes_and_sample_at_the_recipe_temperature(world: TinyWorld) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(world.tokenizer)
    for path in (world.teacher, world.student):
        model = AutoModelForCausalLM.from_pretrained(path)
        assert type(model).__name__ == "Qwen2ForCausalLM"
        assert model.config.vocab_size == len(tokenizer)
        generation = GenerationConfig.from_pretrained(path)
        assert generation.do_sample is True
        assert generation.temperature == 0.7
        assert AutoTokenizer.from_pretrained(path).get_vocab() == tokenizer.get_vocab()


def test_the_served_teacher_answers_a_training_format_prompt_with_a_trace(world: TinyWorld) -> None:
    from openai import OpenAI

    problem = read_jsonl(world.held_out)[0]
    with transformers_server(str(world.teacher)) as base_url:
        client = OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=120)
        assert [model.id for model in client.models.list().data] == [str(world.teacher)]
        response = client.chat.completions.create(
            model=str(world.teacher),
            messages=chat_messages(problem["problem"]),  # type: ignore[arg-type]
            temperature=0.7,
            max_tokens=world.manifest["sampling"]["max_new_tokens"],
        )
    text = response.choices[0].message.content or ""
    assert "column by column" in text
    assert last_boxed(text) is not None, text
    assert response.usage is not None
    assert response.usage.prompt_tokens > 20
    assert response.usage.completion_tokens > 10
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_the_server_is_gone_after_the_block(world: TinyWorld) -> None:
    import httpx

    with transformers_server(str(world.student)) as base_url:
        assert httpx.get(f"{base_url}/models", timeout=5).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/models", timeout=5)


def _build_in_subprocess(cache_root: Path, recipe: Recipe) -> subprocess.Popen[bytes]:
    program = (
        "import sys, json; from pathlib import Path\n"
        "from reasoning_pipeline.tiny_world.build import Recipe, build_tiny_world\n"
        "from reasoning_pipeline.tiny_world.models import ModelShape\n"
        "fields = json.loads(sys.argv[2])\n"
        "fields['teacher'] = ModelShape(**fields['teacher'])\n"
        "fields['student_layers'] = tuple(fields['student_layers'])\n"
        "build_tiny_world(Path(sys.argv[1]), recipe=Recipe(**fields))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", program, str(cache_root), json.dumps(dataclasses.asdict(recipe))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_a_killed_build_leaves_no_world_and_the_next_build_finishes(tmp_path: Path) -> None:
    recipe = dataclasses.replace(SMALL_RECIPE, teacher_steps=2000)  # long enough to be killed mid-way
    builder = _build_in_subprocess(tmp_path, recipe)
    try:
        wait_for(
            lambda: list(tmp_path.glob(".tiny-world-*.partial-*/tokenizer/tokenizer.json")),
            timeout=120,
            what="the build to reach model training",
        )
    finally:
        builder.send_signal(signal.SIGKILL)
        builder.wait()
    assert not world_directory(tmp_path, 0, recipe).exists()
    assert list(tmp_path.glob(".tiny-world-*.partial-*"))

    small = dataclasses.replace(recipe, teacher_steps=SMALL_RECIPE.teacher_steps)
    # a leftover of an earlier killed build of the same recipe is cleared before building
    leftover = tmp_path / f".{world_directory(tmp_path, 0, small).name}.partial-killed"
    (leftover / "teacher").mkdir(parents=True)
    rebuilt = build_tiny_world(tmp_path, recipe=small, log=lambda line: None)
    assert rebuilt.root == world_directory(tmp_path, 0, small)
    assert rebuilt.manifest["complete"] is True
    assert rebuilt.teacher.joinpath("model.safetensors").exists()
    assert not leftover.exists()


def test_a_failed_build_cleans_up_and_a_finished_one_is_reused(tmp_path: Path) -> None:
    class Interrupted(BaseException):
        pass

    def interrupt_at_the_student(line: str) -> None:
        if line.startswith("student:"):
            raise Interrupted

    with pytest.raises(Interrupted):
        build_tiny_world(tmp_path, recipe=SMALL_RECIPE, log=interrupt_at_the_student)
    assert list(tmp_path.iterdir()) == [tmp_path / f".{world_directory(tmp_path, 0, SMALL_RECIPE).name}.lock"]

    first = build_tiny_world(tmp_path, seed=5, recipe=SMALL_RECIPE, log=lambda line: None)
    second = build_tiny_world(tmp_path, seed=5, recipe=SMALL_RECIPE, log=lambda line: None)
    assert first == second
    assert first.root == world_directory(tmp_path, 5, SMALL_RECIPE)
    assert first.manifest["seed"] == 5
    assert json.loads((first.root / "manifest.json").read_text(encoding="utf-8")) == first.manifest


def test_the_command_line_builds_and_prints_the_paths(tmp_path: Path) -> None:
    # the real recipe is what the command builds; point it at the already-built shared cache
    root = build_tiny_world().root.parent
    finished = subprocess.run(
        [sys.executable, "-m", "reasoning_pipeline.tiny_world", "--cache-root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert "teacher held-out accuracy at T=0.7" in finished.stdout
    assert str(build_tiny_world().teacher) in finished.stdout
