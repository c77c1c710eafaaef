"""The tiny world's pure parts: problems, traces, record formats, the tokenizer and the cache naming."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from reasoning_pipeline.boxed import last_boxed
from reasoning_pipeline.prompts import numina_prompt
from reasoning_pipeline.tiny_world.kernels import OVERRIDE_VARIABLE, PINNED_ENVIRONMENT, build_environment
from reasoning_pipeline.tiny_world.problems import (
    SHAPES,
    Operation,
    digits_of,
    generate_problems,
    is_correct,
    is_held_out,
    result_of,
    worked_solution,
)
from reasoning_pipeline.tiny_world.records import (
    NUMINA_SOURCE,
    TEACHER_SYSTEM_PROMPT,
    chat_messages,
    math500_record,
    numina_record,
)


def test_the_same_seed_gives_the_same_problems() -> None:
    first = generate_problems(50, seed=3, split="train", stream="s")
    assert first == generate_problems(50, seed=3, split="train", stream="s")
    assert first != generate_problems(50, seed=4, split="train", stream="s")
    assert first != generate_problems(50, seed=3, split="train", stream="other")


def test_problems_within_a_split_are_distinct() -> None:
    problems = generate_problems(2000, seed=0, split="train", stream="s")
    assert len({problem.key for problem in problems}) == len(problems)


def test_held_out_problems_never_appear_in_training_data() -> None:
    held_out = generate_problems(500, seed=0, split="held_out", stream="math500")
    train = [
        problem
        for stream in ("numina", "teacher-training", "student-pretraining")
        for problem in generate_problems(3000, seed=0, split="train", stream=stream)
    ]
    assert {problem.key for problem in held_out}.isdisjoint(problem.key for problem in train)
    assert all(is_held_out(p.operation, p.left, p.right) for p in held_out)
    assert not any(is_held_out(p.operation, p.left, p.right) for p in train)


def test_every_shape_appears_in_a_large_draw() -> None:
    problems = generate_problems(3000, seed=0, split="train", stream="s")
    seen = {(p.operation, len(str(p.left)), len(str(p.right))) for p in problems}
    assert seen == {(shape.operation, shape.left_digits, shape.right_digits) for shape in SHAPES}


def test_subtraction_problems_never_go_negative() -> None:
    problems = generate_problems(2000, seed=1, split="train", stream="s")
    assert all(p.left >= p.right for p in problems if p.operation is Operation.SUBTRACTION)


@pytest.mark.parametrize(
    ("operation", "left", "right", "answer"),
    [
        (Operation.ADDITION, 553, 683, "1236"),
        (Operation.ADDITION, 99, 1, "100"),
        (Operation.ADDITION, 10, 10, "20"),
        (Operation.SUBTRACTION, 342, 335, "7"),
        (Operation.SUBTRACTION, 1000, 1, "999"),
        (Operation.SUBTRACTION, 55, 55, "0"),
        (Operation.MULTIPLICATION, 569, 7, "3983"),
        (Operation.MULTIPLICATION, 12, 3, "36"),
    ],
)
def test_worked_solution_ends_in_the_right_boxed_answer(
    operation: Operation, left: int, right: int, answer: str
) -> None:
    solution = worked_solution(operation, left, right)
    assert last_boxed(solution) == answer
    assert str(result_of(operation, left, right)) == answer


def test_traces_write_the_result_digits_column_by_column() -> None:
    lines = worked_solution(Operation.ADDITION, 553, 683).splitlines()
    assert lines == [
        "553+683, column by column from the ones:",
        "ones:3+3+0=6, carry:0, so far:6",
        "tens:5+8+0=13, carry:1, so far:36",
        "hundreds:5+6+1=12, carry:1, so far:236",
        "thousands: carry:1, so far:1236",
        "The final answer is $\\boxed{1236}$.",
    ]
    borrowing = worked_solution(Operation.SUBTRACTION, 342, 335).splitlines()
    assert borrowing[1:3] == [
        "ones:2-0<5,12-0-5=7, borrow:1, so far:7",
        "tens:4-1-3=0, borrow:0, so far:07",
    ]
    assert (
        worked_solution(Operation.MULTIPLICATION, 56, 7).splitlines()[1] == "ones:6×7+0=42, carry:4, so far:2"
    )


def test_every_step_of_every_trace_is_true_arithmetic() -> None:
    """Each column's `x=r` holds, its last digit extends `so far`, and the carry or borrow is passed on."""
    for problem in generate_problems(500, seed=2, split="train", stream="s"):
        written, passed_on = "", 0
        for line in problem.solution.splitlines()[1:-1]:
            statement, _, so_far = line.rpartition(", so far:")
            step, _, handed = statement.split(":", 1)[1].rpartition(", ")
            if not step:  # the last carry becomes the leading digit
                written = handed.split(":")[1] + written
            else:
                expression, result = step.split(",")[-1].split("=")
                assert eval(expression.replace("×", "*")) == int(result), line  # digits and + - × only
                terms = re.split(r"[-+×]", expression)
                carried_in = terms[1] if problem.operation is Operation.SUBTRACTION else terms[2]
                assert int(carried_in) == passed_on, line
                written = result[-1] + written
                passed_on = int(handed.split(":")[1])
            assert so_far == written, line
        assert int(written) == int(problem.answer)
        assert is_correct(problem.solution, problem.answer)


def test_digits_are_listed_from_the_ones_place() -> None:
    assert digits_of(4071) == [1, 7, 0, 4]


@pytest.mark.parametrize(
    ("response", "correct"),
    [("… $\\boxed{1236}$.", True), ("\\boxed{1,236}", True), ("\\boxed{1237}", False), ("1236", False)],
)
def test_correctness_is_the_last_boxed_integer(response: str, correct: bool) -> None:
    assert is_correct(response, "1236") is correct


def test_numina_records_have_the_dataset_fields() -> None:
    problem = generate_problems(1, seed=0, split="train", stream="s")[0]
    record = numina_record(problem)
    assert set(record) == {"problem", "solution", "messages", "source"}
    assert record["source"] == NUMINA_SOURCE
    assert "\\boxed{" in record["solution"]
    assert record["messages"] == [
        {"role": "user", "content": problem.question},
        {"role": "assistant", "content": problem.solution},
    ]


def test_math500_records_have_the_dataset_fields() -> None:
    problem = generate_problems(1, seed=0, split="held_out", stream="s")[0]
    record = math500_record(problem, 7)
    assert set(record) == {"problem", "solution", "answer", "subject", "level", "unique_id"}
    assert record["answer"] == problem.answer
    assert last_boxed(record["solution"]) == record["answer"]
    assert 1 <= record["level"] <= 5
    assert record["unique_id"].endswith("-0007.json")
    json.dumps(record)


def test_prompts_are_the_numina_template_after_the_teacher_system_prompt() -> None:
    assert (
        numina_prompt("What is $1 + 2$?") == "Return your final response within \\boxed{}. What is $1 + 2$?"
    )
    assert chat_messages("Q") == [
        {"role": "system", "content": TEACHER_SYSTEM_PROMPT},
        {"role": "user", "content": "Return your final response within \\boxed{}. Q"},
    ]
    assert chat_messages("Q", system_prompt=None) == [
        {"role": "user", "content": "Return your final response within \\boxed{}. Q"}
    ]


# The tokenizer (trained in a second; transformers loads it as any hub tokenizer)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reasoning_pipeline.spec import STILL2_SYSTEM_PROMPT
    from reasoning_pipeline.tiny_world.tokenizer import THOUGHT_MARKERS, save_tokenizer, train_tokenizer

    problems = generate_problems(500, seed=0, split="train", stream="tokenizer")
    corpus = [text for p in problems for text in (p.question, p.solution)]
    corpus += [TEACHER_SYSTEM_PROMPT, STILL2_SYSTEM_PROMPT, *THOUGHT_MARKERS] * 10
    directory = tmp_path_factory.mktemp("tokenizer")
    save_tokenizer(
        train_tokenizer(corpus, vocab_size=512),
        directory,
        default_system_prompt=TEACHER_SYSTEM_PROMPT,
        model_max_length=2048,
    )
    return directory


def test_tokenizer_round_trips_any_text(tokenizer_dir: Path) -> None:
    from reasoning_pipeline.tiny_world.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    rng = random.Random(0)
    texts = [
        worked_solution(Operation.SUBTRACTION, 1000, 1),
        "Ünïcödé ✓ text, tabs\tand\n\nnewlines, 3.14159 and emoji 🧮",
        "".join(chr(rng.randint(32, 0x2FF)) for _ in range(200)),
    ]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_tokenizer_splits_numbers_into_single_digits(tokenizer_dir: Path) -> None:
    from reasoning_pipeline.tiny_world.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    ids = tokenizer("12345 + 678", add_special_tokens=False)["input_ids"]
    pieces = [str(tokenizer.decode([i])).strip() for i in ids]
    assert [piece for piece in pieces if piece.isdigit()] == list("12345678")


def test_chat_and_thought_markers_are_single_tokens(tokenizer_dir: Path) -> None:
    from reasoning_pipeline.tiny_world.tokenizer import (
        SPECIAL_TOKENS,
        THOUGHT_MARKERS,
        load_tokenizer,
    )

    tokenizer = load_tokenizer(tokenizer_dir)
    for marker in (*SPECIAL_TOKENS, *THOUGHT_MARKERS):
        assert len(tokenizer(marker, add_special_tokens=False)["input_ids"]) == 1, marker
    trace = (
        "<|begin_of_thought|>\n\n7 + 5 = 12\n\n<|end_of_thought|>\n\n"
        "<|begin_of_solution|>\\boxed{12}<|end_of_solution|>"
    )
    ids = tokenizer(trace + "<|im_end|>", add_special_tokens=False)["input_ids"]
    # a server decodes with skip_special_tokens: the chat tokens go, the thought markers stay
    assert tokenizer.decode(ids, skip_special_tokens=True) == trace


def test_chat_template_renders_qwen_format_with_the_default_system_prompt(tokenizer_dir: Path) -> None:
    from reasoning_pipeline.tiny_world.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    expected = (
        f"<|im_start|>system\n{TEACHER_SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\nReturn your final response within \\boxed{}. Q<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    for messages in (chat_messages("Q"), chat_messages("Q", system_prompt=None)):
        assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == expected
    other = tokenizer.apply_chat_template(
        [*chat_messages("Q", system_prompt="Be brief."), {"role": "assistant", "content": "A"}],
        tokenize=False,
    )
    assert other == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nReturn your final response within \\boxed{}. Q<|im_end|>\n"
        "<|im_start|>assistant\nA<|im_end|>\n"
    )
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"


def test_cache_folder_names_follow_the_recipe_and_seed(tmp_path: Path) -> None:
    import dataclasses

    from reasoning_pipeline.tiny_world.build import DEFAULT_RECIPE, world_directory

    assert world_directory(tmp_path, 0) == world_directory(tmp_path, 0)
    assert world_directory(tmp_path, 0) != world_directory(tmp_path, 1)
    changed = dataclasses.replace(DEFAULT_RECIPE, teacher_steps=DEFAULT_RECIPE.teacher_steps + 1)
    assert world_directory(tmp_path, 0, changed) != world_directory(tmp_path, 0)
    assert world_directory(tmp_path, 0).name.startswith("tiny-world-")


def test_an_incomplete_or_foreign_manifest_is_not_a_world(tmp_path: Path) -> None:
    from reasoning_pipeline.tiny_world.build import read_complete_manifest

    (tmp_path / "teacher").mkdir()
    assert read_complete_manifest(tmp_path, "abc") is None
    (tmp_path / "manifest.json").write_text('{"complete": true, "fingerprint": "ab', encoding="utf-8")
    assert read_complete_manifest(tmp_path, "abc") is None
    manifest = {"complete": True, "fingerprint": "abc", "paths": {"teacher": "teacher"}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert read_complete_manifest(tmp_path, "abc") == manifest
    assert read_complete_manifest(tmp_path, "other") is None
    (tmp_path / "teacher").rmdir()
    assert read_complete_manifest(tmp_path, "abc") is None


@pytest.mark.parametrize(
    ("caller", "flags", "capability", "mkl"),
    [
        ({}, {"avx2", "fma"}, "avx2", "AVX2"),
        ({"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO"}, {"avx2", "avx512f"}, "avx2", "AVX2"),
        ({}, {"sse4_2"}, "default", "COMPATIBLE"),  # not this kind of machine: portable kernels
        ({OVERRIDE_VARIABLE: "default"}, {"avx2"}, "default", "AVX2"),  # on purpose, to measure a recipe
    ],
)
def test_a_build_process_runs_on_pinned_kernels(
    caller: dict[str, str], flags: set[str], capability: str, mkl: str
) -> None:
    environment = build_environment({"PATH": "/bin", **caller}, frozenset(flags))
    assert environment["PATH"] == "/bin"
    assert environment["ATEN_CPU_CAPABILITY"] == capability
    assert environment["MKL_CBWR"] == mkl
    assert environment["OMP_NUM_THREADS"] == PINNED_ENVIRONMENT["OMP_NUM_THREADS"]
