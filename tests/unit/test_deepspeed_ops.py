"""DeepSpeed's host ops as the trainer sees them, on this machine's own DeepSpeed (installed from the lock
with nothing compiled in, DS_BUILD_OPS=0): a compiler here can build them just in time; without one the
train stage fails before any process joins, naming the image build to change. The trainer image, which
compiles them in, is checked on the node by tests/integration/test_e2e_demo.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from reasoning_pipeline import deepspeed_ops
from reasoning_pipeline.errors import StageError


def test_this_machines_deepspeed_has_no_host_op_compiled_in() -> None:
    accelerator, _, ops = deepspeed_ops.host_ops()
    assert accelerator == "cpu"
    assert [(op.name, op.compiled) for op in ops] == [("cpu_adam", False), ("deepspeed_shm_comm", False)]


def test_an_op_that_is_not_compiled_in_is_loadable_where_a_compiler_can_build_it() -> None:
    assert deepspeed_ops.compiler_available(), "make setup installs g++ (hack/setup.sh)"
    deepspeed_ops.require_loadable("cpu_adam", "deepspeed_shm_comm")


def test_without_a_compiler_an_op_not_compiled_in_fails_naming_the_image_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StageError) as failure:
        deepspeed_ops.require_loadable("cpu_adam")
    message = str(failure.value)
    assert message.startswith("DeepSpeed's cpu_adam not compiled for the 'cpu' accelerator")
    assert "rebuild images/trainer with --build-arg DS_ACCELERATOR=cpu" in message
    deepspeed_ops.require_loadable()  # asking for nothing needs nothing


def test_the_image_builds_check_refuses_an_installation_without_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert deepspeed_ops.main(["--require-compiled"]) == 1
    assert "not compiled in for 'cpu': cpu_adam, deepspeed_shm_comm" in capsys.readouterr().err
    assert deepspeed_ops.main([]) == 0
    assert '"loaded": {}' in capsys.readouterr().out
