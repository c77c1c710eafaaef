"""What a server says about itself (GET /v1/models, GET /version), and the context check built on it.
VLLM_MODELS has the fields vLLM 0.32 answered with on this machine (`max_model_len` per model); the other
stands for any OpenAI-compatible server that lists no context length and has no /version."""

from __future__ import annotations

import pytest
from reasoning_pipeline.completions import FatalError
from reasoning_pipeline.served import ServerFacts, check_context, facts_from

VLLM_MODELS = {
    "object": "list",
    "data": [
        {
            "id": "/data/tiny-world/teacher",
            "object": "model",
            "owned_by": "vllm",
            "root": "/data/tiny-world/teacher",
            "max_model_len": 2048,
        },
        {"id": "tiny-world/teacher", "object": "model", "owned_by": "vllm", "max_model_len": 2048},
    ],
}
OTHER_MODELS = {
    "object": "list",
    "data": [{"id": "Qwen/Qwen2.5-0.5B", "object": "model", "owned_by": "qwen"}],
}


def test_vllm_says_its_engine_version_and_context() -> None:
    facts = facts_from(VLLM_MODELS, {"version": "0.32.0"}, "tiny-world/teacher")
    assert facts == ServerFacts(engine="vllm", version="0.32.0", max_model_len=2048)
    assert facts.as_status() == {"engine": "vllm", "version": "0.32.0", "maxModelLen": 2048}


def test_a_server_that_says_less_leaves_the_rest_unknown() -> None:
    assert facts_from(OTHER_MODELS, None, "/data/student") == ServerFacts(engine="qwen")
    assert facts_from({}, None, "m") == ServerFacts()
    assert facts_from({"data": [{"id": "m", "max_model_len": True}]}, {}, "m").max_model_len is None


def test_a_budget_over_the_context_fails_naming_the_field_and_the_servers_figure() -> None:
    facts = ServerFacts(engine="vllm", version="0.32.0", max_model_len=32768)
    with pytest.raises(FatalError) as failure:
        check_context(
            facts, max_tokens=32769, field="evaluation.sampling.maxTokens", where="http://eval:8000/v1"
        )
    message = str(failure.value)
    assert message.startswith("evaluation.sampling.maxTokens (32769) exceeds the context")
    assert "http://eval:8000/v1 serves at most 32768 tokens" in message
    check_context(facts, max_tokens=32768, field="f", where="w")  # vLLM answers with what is left
    check_context(ServerFacts(), max_tokens=10**6, field="f", where="w")  # nothing known, nothing refused
