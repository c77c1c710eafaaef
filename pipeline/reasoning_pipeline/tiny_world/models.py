"""Qwen2-architecture models of the tiny world: their shapes, random initialisation, and how they are saved.

A saved model directory holds the weights, the tokenizer and a generation config that samples at the
recipe's temperature: `transformers serve` ignores a request's temperature unless the model's own
generation config enables sampling (DESIGN §7).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

from reasoning_pipeline.tiny_world.tokenizer import ENDOFTEXT, IM_END, token_id

RECIPE_TEMPERATURE = 0.7


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    intermediate_size: int
    layers: int
    attention_heads: int
    key_value_heads: int


def qwen2_config(shape: ModelShape, tokenizer: PreTrainedTokenizerBase, *, max_positions: int) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.attention_heads,
        num_key_value_heads=shape.key_value_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        use_sliding_window=False,
        pad_token_id=token_id(tokenizer, ENDOFTEXT),
        eos_token_id=token_id(tokenizer, IM_END),
        bos_token_id=None,
        dtype="float32",
    )


def new_model(
    shape: ModelShape, tokenizer: PreTrainedTokenizerBase, *, max_positions: int, seed: int
) -> Qwen2ForCausalLM:
    """A randomly initialised model; the same seed gives the same weights."""
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(qwen2_config(shape, tokenizer, max_positions=max_positions))


def pruned_copy(model: Qwen2ForCausalLM, keep_layers: tuple[int, ...]) -> Qwen2ForCausalLM:
    """A smaller model made of `model`'s embeddings, final norm and the decoder layers in `keep_layers`.

    Layer dropping breaks a trained model's answers while keeping much of what it learned, the way a
    pruned (Minitron-style) student starts out before it is distilled.
    """
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(keep_layers)
    if config.layer_types is not None:
        config.layer_types = [config.layer_types[index] for index in keep_layers]
    pruned = Qwen2ForCausalLM(config)
    state = model.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.startswith("model.layers."):
            index, rest = name.removeprefix("model.layers.").split(".", 1)
            if int(index) not in keep_layers:
                continue
            name = f"model.layers.{keep_layers.index(int(index))}.{rest}"
        renamed[name] = tensor.clone()
    pruned.load_state_dict(renamed, strict=True)
    pruned.generation_config = copy.deepcopy(model.generation_config)
    pruned.eval()  # type: ignore[no-untyped-call]
    return pruned


def parameter_count(model: torch.nn.Module) -> int:
    """Distinct parameters (tied input and output embeddings count once)."""
    return sum(parameter.numel() for parameter in model.parameters())


def sampling_config(tokenizer: PreTrainedTokenizerBase, *, max_new_tokens: int) -> GenerationConfig:
    """Sample at T=0.7 over the whole vocabulary (top_k=0, top_p=1, as vLLM's defaults), stop at the end
    of the assistant turn."""
    stop = [token_id(tokenizer, IM_END), token_id(tokenizer, ENDOFTEXT)]
    return GenerationConfig(  # type: ignore[no-untyped-call]
        do_sample=True,
        temperature=RECIPE_TEMPERATURE,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        eos_token_id=stop,
        pad_token_id=token_id(tokenizer, ENDOFTEXT),
    )


def save_model(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerBase, directory: Path, *, max_new_tokens: int
) -> None:
    model.generation_config = sampling_config(tokenizer, max_new_tokens=max_new_tokens)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def load_model(directory: Path) -> Qwen2ForCausalLM:
    model: Qwen2ForCausalLM = Qwen2ForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.eval()  # type: ignore[no-untyped-call]
    return model
