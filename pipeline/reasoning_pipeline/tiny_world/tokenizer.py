"""The tiny world's tokenizer: a small byte-level BPE trained here, with Qwen2's pipeline and chat format.

It is saved as a `Qwen2Tokenizer`, and its normalizer and pre-tokenizer are exactly Qwen2's (NFC, Qwen's
split pattern, byte level). That is not only for looks: next to a Qwen2 `config.json`, `AutoTokenizer`
(and so `transformers serve`) loads any tokenizer as `Qwen2Tokenizer`, which rebuilds Qwen's pipeline
around the saved vocabulary; a custom pattern would then tokenize differently at serving time than in
training. Like Qwen2's, it splits every digit into its own token (digit-level arithmetic stays learnable)
and works on bytes, so any text a later stage produces round-trips. The Sky-T1 thought/solution markers
are single tokens but not *special* ones: a decoder that skips special tokens (as `transformers serve`
does) keeps them, the way a real model's output keeps them as text.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast, Qwen2Tokenizer

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
THOUGHT_MARKERS = (
    "<|begin_of_thought|>",
    "<|end_of_thought|>",
    "<|begin_of_solution|>",
    "<|end_of_solution|>",
)

# Qwen2's pre-tokenizer pattern (transformers' Qwen2Tokenizer): words with one leading non-letter, single
# digits, punctuation runs.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def chat_template(default_system_prompt: str) -> str:
    """The Qwen2.5 chat format (without tool calls): a system turn always comes first, and when the
    conversation has none, `default_system_prompt` takes its place, as in Qwen's own templates."""
    default = default_system_prompt.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return (
        "{%- if messages[0]['role'] == 'system' %}"
        "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
        "{%- else %}"
        f"{{{{- '<|im_start|>system\\n{default}<|im_end|>\\n' }}}}"
        "{%- endif %}"
        "{%- for message in messages %}"
        "{%- if not (message['role'] == 'system' and loop.first) %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )


def train_tokenizer(corpus: Iterable[str], *, vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.add_tokens([AddedToken(marker, special=False, normalized=False) for marker in THOUGHT_MARKERS])
    return tokenizer


def save_tokenizer(
    tokenizer: Tokenizer, directory: Path, *, default_system_prompt: str, model_max_length: int
) -> PreTrainedTokenizerBase:
    """Save as a `Qwen2Tokenizer` with the chat template; check it encodes exactly as `tokenizer` does."""
    wrapped = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=model_max_length,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    wrapped.save_pretrained(directory)
    qwen: PreTrainedTokenizerBase = Qwen2Tokenizer.from_pretrained(directory)
    for key in ("is_local", "local_files_only"):  # where it was loaded from, not what it is
        qwen.init_kwargs.pop(key, None)
    qwen.chat_template = chat_template(default_system_prompt)
    probe = f"{default_system_prompt} 12 + 345 = 357 {IM_START}é ✓{THOUGHT_MARKERS[0]} {IM_END}"
    if qwen(probe, add_special_tokens=False)["input_ids"] != tokenizer.encode(probe).ids:
        raise RuntimeError("this transformers version tokenizes a saved Qwen2 tokenizer differently")
    qwen.save_pretrained(directory)
    return qwen


def token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise ValueError(f"{token!r} is not a single token of this tokenizer")
    return found


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(directory)
    return tokenizer
