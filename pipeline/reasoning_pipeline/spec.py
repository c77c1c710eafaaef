"""The ReasoningRun spec: the single source of the CRD schema and what every stage program parses.

Field names are camelCase on the wire (YAML, the Kubernetes API) and snake_case in Python. Defaults are
the published Sky-T1-32B-Preview recipe (see RECIPE.md in the design notes); every field says what it is.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

API_GROUP = "reasoning.dev"
API_VERSION = "v1alpha1"
KIND = "ReasoningRun"


class Stage(StrEnum):
    """The recipe's stages, in the order they run. Used in CLI verbs, labels, child names and status."""

    DATA = "data"
    GENERATE = "generate"
    REWRITE = "rewrite"
    FILTER = "filter"
    FORMAT = "format"
    TRAIN = "train"
    EVALUATE = "evaluate"


STAGE_ORDER: tuple[Stage, ...] = tuple(Stage)

# Published prompts. The teacher's system prompt is Qwen's; the STILL-2 prompt is what makes the student
# write a thought section at inference (users who left it out saw "thoughts not shown").
QWEN_SYSTEM_PROMPT = (
    "You are a helpful and harmless assistant. You are Qwen developed by Alibaba. "
    "You should think step-by-step."
)
STILL2_SYSTEM_PROMPT = (
    "Your role as an assistant involves thoroughly exploring questions through a systematic long thinking "
    "process before providing the final precise and accurate solutions. This requires engaging in a "
    "comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, backtracing, and "
    "iteration to develop well-considered thinking process. Please structure your response into two main "
    "sections: Thought and Solution. In the Thought section, detail your reasoning process using the "
    "specified format: <|begin_of_thought|> {thought with steps separated with '\\n\\n'} "
    "<|end_of_thought|> Each step should include detailed considerations such as analisying questions, "
    "summarizing relevant findings, brainstorming new ideas, verifying the accuracy of the current steps, "
    "refining any errors, and revisiting previous steps. In the Solution section, based on various "
    "attempts, explorations, and reflections from the Thought section, systematically present the final "
    "solution that you deem correct. The solution should remain a logical, accurate, concise expression "
    "style and detail necessary step needed to reach the conclusion, formatted as follows: "
    "<|begin_of_solution|> {final formatted, precise, and clear solution} <|end_of_solution|> Now, try to "
    "solve the following question through the above guidelines:"
)


class SpecModel(BaseModel):
    """camelCase on the wire, unknown fields refused (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_default=True
    )


KubeName = Annotated[
    str,
    Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
]
Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|M|G|T|P)?$")]
# A path segment other than "..", and the first one not "~…" either: no way out of the storage root, no
# home directory of whoever reads it, and forward slashes only (RE2, as the API server's, has no lookahead)
_SEGMENT = r"(\.?|\.\.[^/\\]+|\.[^./\\][^/\\]*|[^./\\][^/\\]*)"
_FIRST_SEGMENT = r"(\.?|\.\.[^/\\]+|\.[^./\\][^/\\]*|[^~./\\][^/\\]*)"
StoragePath = Annotated[
    str, Field(min_length=1, max_length=4096, pattern=rf"^/?{_FIRST_SEGMENT}(/{_SEGMENT})*$")
]
HttpUrl = Annotated[str, Field(max_length=2048, pattern=r"^https?://[^/\s]+(/\S*)?$")]
# a value that must say something: an id, a name, a split
Text = Annotated[str, Field(min_length=1, max_length=1024)]
# the most tokens anything here is asked for or holds (1M: beyond every model of the recipe)
MAX_TOKENS = 1 << 20


# ------------------------------------------------------------------------------------------- cluster
class SecretKeyRef(SpecModel):
    name: KubeName = Field(description="Name of a Secret in the run's namespace.")
    key: str = Field(min_length=1, description="Key within the Secret.")


class Toleration(SpecModel):
    key: str | None = Field(default=None, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value, for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; all effects when empty."
    )

    @model_validator(mode="after")
    def _can_match(self) -> Self:
        """As the CRD's toleration rules say (and the API server would say of the pod, too late)."""
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("nodePools[].tolerations[].value must be empty with operator Exists")
        if self.operator == "Equal" and not self.key:
            raise ValueError(
                "nodePools[].tolerations[].key is needed with operator Equal (only Exists matches every key)"
            )
        return self


class NodePool(SpecModel):
    name: KubeName = Field(description="Name stages use to pick this pool (e.g. `nodePool: h100`).")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Labels a node must carry.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints the pods tolerate.")
    gpu_resource_name: str = Field(
        default="nvidia.com/gpu", description="Extended resource that counts GPUs on these nodes."
    )
    gpus_per_node: int = Field(default=0, ge=0, le=64, description="GPUs on each node of the pool; 0 = CPU.")
    gpu_hour_usd: float = Field(
        default=0.0, ge=0, description="Price of one GPU-hour, for the run's cost estimate in status."
    )


def default_node_pools() -> list[NodePool]:
    return [
        NodePool(name="cpu"),
        NodePool(
            name="h100",
            node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
            gpus_per_node=8,
            # Sky-T1's $450 for ~19 h on 8 H100s
            gpu_hour_usd=2.96,
        ),
    ]


class StorageSpec(SpecModel):
    claim_name: KubeName | None = Field(
        default=None, description="An existing PersistentVolumeClaim to use; a new one is made when empty."
    )
    size: Quantity = Field(default="2Ti", description="Size of the claim the operator creates.")
    storage_class_name: str | None = Field(default=None, description="StorageClass of the created claim.")
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = Field(
        default="ReadWriteMany", description="ReadWriteMany is needed when training spans several nodes."
    )
    mount_path: str = Field(
        default="/data", pattern=r"^/", description="Where stage containers mount the shared storage."
    )


class ImagesSpec(SpecModel):
    pipeline: str = Field(
        default="ghcr.io/reasoning-operator/pipeline:0.1.0",
        description="Image of the CPU stages (data, generate driver, rewrite, filter, format, evaluate).",
    )
    trainer: str = Field(
        default="ghcr.io/reasoning-operator/trainer:0.1.0",
        description="Image with torch, transformers and DeepSpeed for the train stage.",
    )
    vllm: str = Field(default="vllm/vllm-openai:v0.11.0", description="Image serving models with vLLM.")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="imagePullPolicy of every stage container."
    )


class Resources(SpecModel):
    cpu: Quantity = Field(default="2", description="CPU request (and limit) of the stage container.")
    memory: Quantity = Field(default="8Gi", description="Memory request (and limit) of the stage container.")


DEADLINE_CEILING = 30 * 24 * 3600


def _deadline(hours: int) -> Any:
    """A stage's deadline field, defaulting to `hours`: well past what the full recipe takes on its pools,
    so that it catches what hangs, not what is slow."""
    return Field(
        default=hours * 3600,
        ge=60,
        le=DEADLINE_CEILING,
        description="Seconds an attempt's Job (or PyTorchJob) may run, pending time included; past it the "
        "attempt fails and the next one resumes from what it kept.",
    )


class StageCommon(SpecModel):
    enabled: bool = Field(default=True, description="Run this stage; when false it is skipped.")
    deadline_seconds: int = _deadline(24)
    max_attempts: int = Field(
        default=3, ge=1, le=20, description="Failed children are retried until this many attempts."
    )
    resources: Resources = Field(default_factory=Resources, description="Container resources.")


# --------------------------------------------------------------------------------------------- data
SourceFormat = Literal["numina", "apps", "taco", "still2", "reasoning-gym"]
# What `subsets` and `difficulties` select, per format: the values the published datasets hold (a value
# outside them selects nothing, silently, so the schema refuses it). STILL-2's domains are open.
SUBSET_FORMATS: tuple[str, ...] = ("numina", "still2")
SUBSETS: dict[str, tuple[str, ...]] = {
    "numina": (
        "amc_aime",
        "aops_forum",
        "cn_k12",
        "gsm8k",
        "math",
        "olympiads",
        "orca_math",
        "synthetic_amc",
        "synthetic_math",
    ),
}
DIFFICULTIES: dict[str, tuple[str, ...]] = {
    "apps": ("introductory", "interview", "competition"),
    "taco": ("EASY", "MEDIUM", "MEDIUM_HARD", "HARD", "VERY_HARD", "UNKNOWN_DIFFICULTY"),
}


class DataSource(SpecModel):
    name: KubeName = Field(description="Name of the source; used in records, statistics and status.")
    format: SourceFormat = Field(
        description="Record format: numina (NuminaMath-CoT), apps, taco, still2 (ShareGPT-style), "
        "reasoning-gym (generated)."
    )
    hub_id: Text | None = Field(default=None, description="Hugging Face dataset id (needs hub access).")
    path: StoragePath | None = Field(
        default=None,
        description="A local JSON Lines or Parquet file (or directory of them) instead of hub_id.",
    )
    config_name: Text | None = Field(default=None, description="Dataset configuration of hub_id, if any.")
    revision: Text | None = Field(default=None, description="Dataset revision (commit or tag) to pin.")
    split: Text = Field(default="train", description="Dataset split to read.")
    subsets: list[str] = Field(
        default_factory=list,
        description="Keep only these values of the record's source field (Numina `source`, e.g. amc_aime).",
    )
    difficulties: list[str] = Field(
        default_factory=list, description="Keep only these difficulties (TACO: EASY, MEDIUM, …)."
    )
    first: int | None = Field(
        default=None,
        ge=1,
        description="Keep only the first this many records that pass the filters, in the dataset's order, "
        "before the shuffle (Sky-T1's olympiads pool is the subset's first 20,000).",
    )
    limit: int | None = Field(
        default=None, ge=1, description="At most this many records, a seeded random sample after filtering."
    )
    task: Text | None = Field(default=None, description="reasoning-gym task name (e.g. basic_arithmetic).")
    size: int = Field(
        default=100, ge=1, le=10_000_000, description="reasoning-gym: how many problems to generate."
    )

    @model_validator(mode="after")
    def _has_an_origin(self) -> Self:
        if self.format == "reasoning-gym":
            if not self.task:
                raise ValueError(f"data source {self.name!r}: format reasoning-gym needs `task`")
        elif (self.hub_id is None) == (self.path is None):
            raise ValueError(f"data source {self.name!r}: give exactly one of `hubId` or `path`")
        return self

    @model_validator(mode="after")
    def _selects_what_its_format_holds(self) -> Self:
        """As the CRD's source rules say."""
        for field, selected, formats, known in (
            ("subsets", self.subsets, SUBSET_FORMATS, SUBSETS),
            ("difficulties", self.difficulties, tuple(DIFFICULTIES), DIFFICULTIES),
        ):
            if selected and self.format not in formats:
                raise ValueError(
                    f"data source {self.name!r}: {field} apply to {' and '.join(formats)} sources only"
                )
            unknown = [v for v in selected if self.format in known and v not in known[self.format]]
            if unknown:
                raise ValueError(
                    f"data source {self.name!r}: {field} {unknown} are not among the {self.format} "
                    f"values: {', '.join(known[self.format])}"
                )
        return self


def default_sources() -> list[DataSource]:
    # Sky-T1's candidate pools: Numina subsets (olympiads' first 20,000), APPS test, TACO train
    # MEDIUM and TACO test, STILL-2's science/puzzles.
    numina = "AI-MO/NuminaMath-CoT"
    return [
        DataSource(name="numina-amc-aime", format="numina", hub_id=numina, subsets=["amc_aime"]),
        DataSource(name="numina-math", format="numina", hub_id=numina, subsets=["math"]),
        DataSource(
            name="numina-olympiads", format="numina", hub_id=numina, subsets=["olympiads"], first=20000
        ),
        DataSource(name="apps", format="apps", hub_id="codeparrot/apps", split="test"),
        DataSource(name="taco", format="taco", hub_id="BAAI/TACO", split="train", difficulties=["MEDIUM"]),
        DataSource(name="taco-test", format="taco", hub_id="BAAI/TACO", split="test"),
        DataSource(name="still2", format="still2", hub_id="RUC-AIBOX/long_form_thought_data_5k"),
    ]


class DataSpec(StageCommon):
    deadline_seconds: int = _deadline(2)
    sources: list[DataSource] = Field(default_factory=default_sources, description="Prompt sets to mix.")
    seed: int = Field(default=42, description="Seed of the deterministic shuffle before limits apply.")
    deduplicate: bool = Field(
        default=True,
        description="Drop repeated questions by normalised text (the released Sky-T1 file had 16,401 rows "
        "but 15,586 unique questions).",
    )

    @model_validator(mode="after")
    def _unique_source_names(self) -> Self:
        names = [s.name for s in self.sources]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"data.sources: names must be unique, repeated: {', '.join(duplicated)}")
        return self


# ----------------------------------------------------------------------------------------- generate
class Sampling(SpecModel):
    temperature: float = Field(default=0.7, ge=0, le=2, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(
        default=16384, ge=1, le=MAX_TOKENS, description="Most tokens to generate per sample."
    )
    samples_per_prompt: int = Field(default=1, ge=1, le=64, description="Samples drawn per prompt.")
    seed: int | None = Field(default=None, description="Sampling seed passed to the server, if any.")


class ServedModel(SpecModel):
    model: Text = Field(description="Hugging Face model id or a path on the shared storage.")
    revision: Text | None = Field(default=None, description="Model revision (commit or tag) to pin.")
    engine: Literal["vllm", "transformers"] = Field(
        default="vllm", description="vllm on GPUs; transformers is the small-scale CPU stand-in."
    )
    node_pool: KubeName = Field(default="h100", description="Node pool the server runs on.")
    tensor_parallel_size: int = Field(default=8, ge=1, le=64, description="GPUs one server spans.")
    replicas: int = Field(default=1, ge=1, le=64, description="Data-parallel server replicas.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="bfloat16", description="Weights and activations dtype."
    )
    max_model_len: int | None = Field(
        default=None, ge=1, le=MAX_TOKENS, description="Context length the server allows."
    )
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1, description="vLLM's memory fraction.")
    enforce_eager: bool = Field(
        default=False,
        description="vLLM without CUDA graphs or torch.compile (--enforce-eager): starts sooner, runs "
        "slower; for small models on CPU pools.",
    )
    cpu_kv_cache_gib: int = Field(
        default=1,
        ge=1,
        le=4096,
        description="vLLM on a CPU pool: GiB of the server's memory for the KV cache "
        "(VLLM_CPU_KVCACHE_SPACE); unused on GPUs.",
    )
    resources: Resources | None = Field(
        default=None,
        description="CPU and memory of the server container (on a GPU pool: requests only); the stage's "
        "resources when empty.",
    )
    endpoint: HttpUrl | None = Field(
        default=None,
        description="Use this OpenAI-compatible base URL (e.g. http://host:8000/v1) instead of deploying a "
        "server.",
    )


class GenerationSpec(StageCommon):
    deadline_seconds: int = _deadline(72)
    teacher: ServedModel = Field(
        default_factory=lambda: ServedModel(model="Qwen/QwQ-32B-Preview"), description="The teacher model."
    )
    sampling: Sampling = Field(default_factory=Sampling, description="Teacher sampling parameters.")
    system_prompt: str = Field(default=QWEN_SYSTEM_PROMPT, description="Teacher system prompt.")
    concurrency: int = Field(default=64, ge=1, le=4096, description="Requests in flight at once.")
    max_retries: int = Field(default=5, ge=0, le=100, description="Retries of one failed request.")
    request_timeout_seconds: float = Field(
        default=3600, gt=0, le=86400, description="Timeout of one request."
    )
    server_ready_timeout_seconds: float = Field(
        default=1800,
        gt=0,
        le=86400,
        description="How long the teacher's servers may take to become ready: past it the driver gives "
        "up waiting, and the operator fails the attempt with the server's last log line.",
    )
    input_path: StoragePath | None = Field(
        default=None, description="Prompts file to use instead of the data stage's output."
    )
    keep_truncated: bool = Field(
        default=False,
        description="Pass traces the teacher stopped at sampling.maxTokens (finish reason `length`) on to "
        "rewrite; by default they are counted per source and dropped, as a cut trace has no final answer.",
    )


# ------------------------------------------------------------------------------------------ rewrite
class ApiPrice(SpecModel):
    """What the API's provider charges; GPT-4o-mini's list price by default."""

    prompt_usd_per_million: float = Field(
        default=0.15, ge=0, le=1000, description="USD per million prompt (input) tokens."
    )
    completion_usd_per_million: float = Field(
        default=0.60, ge=0, le=1000, description="USD per million completion (output) tokens."
    )


class RewriteSpec(StageCommon):
    model: Text = Field(default="gpt-4o-mini", description="Model that reformats the raw traces.")
    base_url: HttpUrl = Field(
        default="https://api.openai.com/v1", description="OpenAI-compatible API base URL."
    )
    api_key_secret: SecretKeyRef | None = Field(
        default=None, description="Secret holding the API key (mounted as OPENAI_API_KEY, never logged)."
    )
    stand_in: bool = Field(
        default=False,
        description="Rewrite with the project's rule-based stand-in server instead of an API model (tiny "
        "runs and demos: no key, no cost, not a language model).",
    )
    price: ApiPrice = Field(
        default_factory=ApiPrice,
        description="The model's price, for status.cost (nothing is charged with standIn).",
    )
    temperature: float = Field(default=0.7, ge=0, le=2, description="Sampling temperature of the rewrite.")
    max_tokens: int = Field(
        default=16384, ge=1, le=MAX_TOKENS, description="Most tokens of one rewritten trace."
    )
    concurrency: int = Field(default=16, ge=1, le=1024, description="Requests in flight at once.")
    max_retries: int = Field(default=8, ge=0, le=100, description="Retries of one failed request.")
    request_timeout_seconds: float = Field(default=600, gt=0, le=86400, description="Timeout of one request.")
    input_path: StoragePath | None = Field(
        default=None, description="Raw traces to use instead of the generate stage's output."
    )


# ------------------------------------------------------------------------------------------- filter
class MathCheck(SpecModel):
    timeout_seconds: float = Field(default=5, gt=0, le=3600, description="Budget of one answer comparison.")


class CodeCheck(SpecModel):
    test_timeout_seconds: float = Field(
        default=4, gt=0, le=3600, description="Wall-clock budget of one test case."
    )
    problem_timeout_seconds: float = Field(
        default=10, gt=0, le=86400, description="Wall-clock budget of all tests of one problem (APPS)."
    )
    taco_problem_timeout_seconds: float = Field(
        default=30, gt=0, le=86400, description="Budget of one TACO problem, whose test suites are larger."
    )
    memory_mb: int = Field(default=1024, ge=64, le=1 << 20, description="Address-space limit of the program.")
    max_processes: int = Field(default=16, ge=1, le=4096, description="Processes the program's user may run.")
    max_output_bytes: int = Field(
        default=1 << 20, ge=1024, le=1 << 30, description="Most output read per test."
    )


class FilterSpec(StageCommon):
    math: MathCheck = Field(default_factory=MathCheck, description="Math answer checking.")
    code: CodeCheck = Field(default_factory=CodeCheck, description="Sandboxed code checking.")
    workers: int = Field(
        default=0, ge=0, le=1024, description="Checker processes; 0 = one per CPU of the pod limit."
    )
    input_path: StoragePath | None = Field(
        default=None, description="Rewritten traces to use instead of the rewrite stage's output."
    )


# ------------------------------------------------------------------------------------------- format
class FormatSpec(StageCommon):
    deadline_seconds: int = _deadline(4)
    system_prompt: str = Field(default=STILL2_SYSTEM_PROMPT, description="System prompt of every sample.")
    tokenizer: Text | None = Field(
        default=None, description="Tokenizer counting tokens; the training base model's when empty."
    )
    max_tokens: int = Field(
        default=16384, ge=16, le=MAX_TOKENS, description="Samples longer than this are dropped."
    )
    input_path: StoragePath | None = Field(
        default=None, description="Kept traces to use instead of the filter stage's output."
    )


# -------------------------------------------------------------------------------------------- train
class DeepSpeedSpec(SpecModel):
    zero_stage: Literal[0, 1, 2, 3] = Field(default=3, description="ZeRO optimisation stage.")
    offload_optimizer: Literal["auto", "cpu", "none"] = Field(
        default="cpu", description="Optimizer state offload; auto lets the memory planner decide."
    )
    offload_parameters: Literal["auto", "cpu", "none"] = Field(
        default="cpu", description="Parameter offload (ZeRO-3 only); auto lets the memory planner decide."
    )


class TrainingSpec(StageCommon):
    deadline_seconds: int = _deadline(96)
    base_model: Text = Field(default="Qwen/Qwen2.5-32B-Instruct", description="Student model to fine-tune.")
    revision: Text | None = Field(default=None, description="Model revision to pin.")
    node_pool: KubeName = Field(default="h100", description="Node pool the PyTorchJob runs on.")
    nodes: int = Field(default=1, ge=1, le=256, description="Nodes (master + workers).")
    gpus_per_node: int = Field(default=8, ge=0, le=64, description="GPUs per node; 0 trains on CPU.")
    processes_per_node: int | None = Field(
        default=None, ge=1, le=64, description="torchrun processes per node; the GPU count when empty."
    )
    micro_batch_size: int = Field(default=1, ge=1, le=1024, description="Sequences per device per step.")
    gradient_accumulation_steps: int = Field(default=12, ge=1, le=4096, description="Micro-batches per step.")
    global_batch_size: int = Field(
        default=96, ge=1, description="micro batch × accumulation × world size (Sky-T1: 1 × 12 × 8)."
    )
    learning_rate: float = Field(default=1e-5, gt=0, le=1, description="Peak learning rate.")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(default="cosine", description="Schedule.")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1, description="Warm-up as a fraction of steps.")
    epochs: float = Field(default=3, gt=0, le=1000, description="Passes over the dataset.")
    cutoff_len: int = Field(
        default=16384, ge=16, le=MAX_TOKENS, description="Longest training sequence, in tokens."
    )
    packing: bool = Field(
        default=False,
        description="Pack several SFT samples into each training sequence of up to cutoffLen tokens, each "
        "attending only to itself (positions restart per sample), so that little of a step is padding. "
        "microBatchSize and globalBatchSize then count packed sequences, not samples. Off: one sample per "
        "sequence, as Sky-T1 trained.",
    )
    precision: Literal["bf16", "fp16", "fp32"] = Field(default="bf16", description="Training precision.")
    save_steps: int = Field(
        default=100, ge=1, le=1_000_000, description="Checkpoint every this many optimizer steps."
    )
    keep_checkpoints: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="Newest checkpoints kept; older ones are deleted as new ones are written (one of a 32B "
        "model with its optimizer state is about 400 GB).",
    )
    nccl_env: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description="NCCL settings for the trainer containers (e.g. NCCL_SOCKET_IFNAME, NCCL_IB_HCA); names "
        "must start with NCCL_.",
    )
    seed: int = Field(default=42, description="Training seed.")
    deepspeed: DeepSpeedSpec = Field(default_factory=DeepSpeedSpec, description="DeepSpeed settings.")
    input_path: StoragePath | None = Field(
        default=None, description="SFT dataset to use instead of the format stage's output."
    )

    @property
    def processes_on_each_node(self) -> int:
        """What torchrun starts on each node: one process per GPU unless set, one on a CPU node."""
        return self.processes_per_node or max(self.gpus_per_node, 1)

    @property
    def world_size(self) -> int:
        return self.nodes * self.processes_on_each_node

    @field_validator("nccl_env")
    @classmethod
    def _only_nccl(cls, env: dict[str, str]) -> dict[str, str]:
        wrong = sorted(name for name in env if not re.fullmatch(r"NCCL_[A-Z0-9_]+", name))
        if wrong:
            raise ValueError(f"training.ncclEnv: {', '.join(wrong)}: only NCCL_* variables belong here")
        return env

    @model_validator(mode="after")
    def _batch_divides(self) -> Self:
        product = self.micro_batch_size * self.gradient_accumulation_steps * self.world_size
        if product != self.global_batch_size:
            raise ValueError(
                f"training.globalBatchSize ({self.global_batch_size}) must equal microBatchSize "
                f"({self.micro_batch_size}) × gradientAccumulationSteps ({self.gradient_accumulation_steps}) "
                f"× world size ({self.world_size}) = {product}"
            )
        return self


# ----------------------------------------------------------------------------------------- evaluate
Benchmark = Literal["math500", "aime24", "gpqa-diamond", "livecodebench", "held-out"]
# the benchmarks scored by running model-written programs (in the sandbox container of the driver's pod)
CODE_BENCHMARKS = frozenset({"livecodebench"})


class BenchmarkSpec(SpecModel):
    name: Benchmark = Field(description="Which benchmark this is (decides the scorer and prompt).")
    hub_id: Text | None = Field(default=None, description="Hugging Face dataset id.")
    config_name: str | None = Field(
        default=None,
        min_length=1,
        description="Dataset configuration: `gpqa_diamond` of Idavidrein/gpqa, a LiveCodeBench release "
        "(`release_v2`: its 511 problems).",
    )
    revision: Text | None = Field(default=None, description="Dataset revision (commit or tag) to pin.")
    path: StoragePath | None = Field(default=None, description="A local file instead of hub_id.")
    split: Text = Field(default="test", description="Dataset split.")
    limit: int | None = Field(default=None, ge=1, description="Score only the first this many problems.")
    sampling: Sampling | None = Field(default=None, description="Overrides the evaluation's sampling.")


def default_benchmarks() -> list[BenchmarkSpec]:
    return [
        BenchmarkSpec(name="math500", hub_id="HuggingFaceH4/MATH-500"),
        BenchmarkSpec(
            name="aime24",
            hub_id="AI-MO/aimo-validation-aime",
            split="train",
            sampling=Sampling(temperature=0.7, max_tokens=32768, seed=41),
        ),
        BenchmarkSpec(
            name="gpqa-diamond",
            hub_id="Idavidrein/gpqa",
            config_name="gpqa_diamond",  # gated: give spec.hub.tokenSecret
            split="train",
            sampling=Sampling(temperature=0.7, max_tokens=32768, seed=41),
        ),
        # Sky-T1 reported release_v2, as SkyThought's evaluation pins it
        BenchmarkSpec(
            name="livecodebench", hub_id="livecodebench/code_generation_lite", config_name="release_v2"
        ),
    ]


class EvaluationServer(ServedModel):
    model: str = Field(default="", description="The model to score; empty means the train stage's output.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="float32", description="float32 by default: Sky-T1's scores moved by points with dtype."
    )


class EvaluationSpec(StageCommon):
    benchmarks: list[BenchmarkSpec] = Field(default_factory=default_benchmarks, description="Benchmarks.")
    sampling: Sampling = Field(
        default_factory=lambda: Sampling(temperature=0.0, max_tokens=32768, seed=41),
        description="Default sampling: greedy, 32,768 tokens, seed 41, as Sky-T1 reported.",
    )
    server: EvaluationServer = Field(
        default_factory=EvaluationServer, description="How the model being evaluated is served."
    )
    server_ready_timeout_seconds: float = Field(
        default=1800,
        gt=0,
        le=86400,
        description="How long the evaluated models' servers may take to become ready: past it the driver "
        "gives up waiting, and the operator fails the attempt with the server's last log line.",
    )
    system_prompt: str = Field(default=STILL2_SYSTEM_PROMPT, description="System prompt at inference.")
    code_timeout_seconds: float = Field(
        default=6, gt=0, le=3600, description="LiveCodeBench per-test timeout."
    )
    compare_with_base: bool = Field(
        default=False, description="Also score training.baseModel, to show what the fine-tune changed."
    )
    max_unanswered_fraction: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Most of one benchmark's requests the server may refuse (e.g. HTTP 400: prompt + "
        "maxTokens over its context) before the stage fails with the server's message; the rest are "
        "scored as wrong and counted as unanswered.",
    )


# --------------------------------------------------------------------------------------------- spec
class HubSpec(SpecModel):
    token_secret: SecretKeyRef | None = Field(
        default=None,
        description="Secret holding a Hugging Face token (as HF_TOKEN) for gated models and datasets such as "
        "GPQA; given to the stages that read the hub, never to filter or rewrite.",
    )
    offline: bool = Field(
        default=False,
        description="Every model and dataset is pre-staged on the storage (as folders, or in its Hugging "
        "Face cache): set HF_HUB_OFFLINE=1, so that nothing reaches for the network.",
    )


# -------------------------------------------------------------------------------------------- estimate
# Model FLOPs utilisation of full-parameter training by what the memory plan offloads: Sky-T1's 19 h on
# 8 H100s with optimizer and parameters on the CPU is ≈ 8 %; torchtitan reports 39 % for a 32B model on
# 8 H100s without offload; DeepSpeed's own reports put full offload ≈ 4.8× slower than none.
MFU_BY_OFFLOAD = {"optimizer+parameters": 0.08, "optimizer": 0.2, "none": 0.35}


class EstimateSpec(SpecModel):
    """The stated assumptions of the pre-flight estimate (status.estimate): with the data's sizes and
    the memory plan, what each stage's GPU-hours and API tokens are computed from before its GPUs are
    asked for."""

    completion_tokens: int = Field(
        default=4000,
        ge=1,
        le=1_000_000,
        description="Mean tokens a teacher or an evaluated model writes per answer, at most the sampling's "
        "maxTokens (Sky-T1's SFT samples: ≈ 4,200 tokens with their prompts).",
    )
    prompt_tokens: int = Field(
        default=300, ge=1, le=1_000_000, description="Mean tokens of a prompt with its system prompt."
    )
    tokens_per_gpu_second: float = Field(
        default=1000,
        gt=0,
        le=1_000_000,
        description="Tokens a vLLM server writes per second per GPU it spans, at full concurrency (a 32B "
        "model in bf16 on H100s).",
    )
    kept_fraction: float = Field(
        default=0.7, gt=0, le=1, description="Fraction of the teacher's traces the filter keeps."
    )
    gpu_peak_tflops: float = Field(
        default=989,
        gt=0,
        le=100_000,
        description="Dense 16-bit TFLOP/s of one GPU of the training pool (H100 SXM: 989).",
    )
    training_mfu: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Model FLOPs utilisation of training. Empty: by what the memory plan offloads: 0.08 "
        "with optimizer and parameters on the CPU (Sky-T1's ≈ 8 %), 0.2 with the optimizer, 0.35 with none.",
    )
    server_start_seconds: float = Field(
        default=600,
        ge=0,
        le=86400,
        description="Seconds a model server holds its GPUs before it answers (loading the weights).",
    )


# --------------------------------------------------------------------------------------------- sandbox
IsolationName = Literal["namespaces", "user-namespace", "uid", "rlimits"]
# a profile's path below the kubelet's seccomp folder: segments that cannot climb out of it
ProfilePath = Annotated[
    str, Field(max_length=512, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$")
]
SANDBOX_PROFILE = "reasoning-operator/sandbox.json"
RuntimeClassName = Annotated[
    str,
    Field(
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    ),
]


class SeccompProfile(SpecModel):
    type: Literal["Localhost", "RuntimeDefault"] = Field(
        default="Localhost",
        description="Localhost: the node's profile at localhostProfile (one that admits user namespaces, so "
        "that the sandbox isolates each program in namespaces of its own); RuntimeDefault: the container "
        "runtime's, under which the sandbox reaches only the rlimits level.",
    )
    localhost_profile: ProfilePath = Field(
        default=SANDBOX_PROFILE,
        description="Path below the kubelet's seccomp folder (/var/lib/kubelet/seccomp) of every node that "
        "runs filter or evaluate pods; used when type is Localhost. The project's profile is "
        "hack/seccomp/sandbox.json.",
    )


AppArmorProfileName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9_.-]+$")]


class AppArmorProfile(SpecModel):
    type: Literal["Localhost", "RuntimeDefault"] = Field(
        description="Localhost: a profile loaded on every node that runs filter or evaluate pods, named by "
        "localhostProfile; RuntimeDefault: the container runtime's (which denies mount: the sandbox "
        "cannot build the mount namespace of the user-namespace level under it)."
    )
    localhost_profile: AppArmorProfileName | None = Field(
        default=None,
        description="The profile's name as the node loaded it (apparmor_parser); only with type Localhost. "
        "It must allow `userns` and `mount` for the sandbox to reach user-namespace.",
    )

    @model_validator(mode="after")
    def _named_when_localhost(self) -> Self:
        if (self.type == "Localhost") != (self.localhost_profile is not None):
            raise ValueError(
                "sandbox.appArmorProfile.localhostProfile: give it with type Localhost, and only then"
            )
        return self


class SandboxSpec(SpecModel):
    seccomp_profile: SeccompProfile = Field(
        default_factory=SeccompProfile, description="Seccomp profile of the sandbox container."
    )
    app_armor_profile: AppArmorProfile | None = Field(
        default=None,
        description="AppArmor profile of the sandbox container, for nodes that enforce AppArmor (Ubuntu's): "
        "there the runtime's default profile denies mount, and Ubuntu 23.10 and later also restrict "
        "unprivileged user namespaces, so the sandbox reaches only rlimits unless a Localhost profile "
        "allows both. Unset: whatever the node applies (none where AppArmor is off).",
    )
    minimum_isolation: IsolationName = Field(
        default="user-namespace",
        description="The weakest isolation the sandbox may run model-written code under; a pod whose sandbox "
        "reaches less fails before any program runs. rlimits (the programs share the pod's network and "
        "run as the sandbox container's uid) only when written here.",
    )
    runtime_class_name: RuntimeClassName | None = Field(
        default=None,
        description="RuntimeClass of the pods that run model-written code (e.g. gVisor's or Kata's): the "
        "whole pod runs under it, the stage's container too.",
    )
    resources: Resources = Field(
        default_factory=lambda: Resources(cpu="1", memory="2Gi"),
        description="The sandbox container's CPU and memory: every program of the pod together (the memory "
        "limit is their cgroup, so a flood is killed there, not in the checker).",
    )

    @model_validator(mode="after")
    def _can_reach_its_minimum(self) -> Self:
        """As the CRD's sandbox rule says: the runtime's default profile refuses user namespaces to a
        container without CAP_SYS_ADMIN (containerd's and CRI-O's alike), so only the rlimits level is
        left there, unless another runtime class decides."""
        if (
            self.seccomp_profile.type == "RuntimeDefault"
            and self.minimum_isolation != "rlimits"
            and self.runtime_class_name is None
        ):
            raise ValueError(
                "sandbox.minimumIsolation: under seccompProfile RuntimeDefault the sandbox reaches only the "
                "rlimits level; use a Localhost profile that admits user namespaces, a runtimeClassName, or "
                "write minimumIsolation: rlimits"
            )
        return self


RestartId = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
]


class RestartFrom(SpecModel):
    """Run a stage and every stage after it again, keeping what the stages before it made: once per id,
    as `kubectl rollout restart` restarts once per annotation value."""

    stage: Stage = Field(description="The first stage to run again; it must be enabled.")
    id: RestartId = Field(
        description="Any new value asks for a new rerun (e.g. a date); the same value again does nothing. "
        "The stages' earlier outputs are moved aside on the storage, never deleted."
    )


class ReasoningRunSpec(SpecModel):
    suspend: bool = Field(default=False, description="Stop creating children and scale the teacher away.")
    restart_from: RestartFrom | None = Field(
        default=None,
        description="Run this stage and the ones after it again (after a fix, a new image, or an edit to "
        "a stage that has already run), keeping the outputs of the ones before it.",
    )
    queue_name: str | None = Field(
        default=None, description="Kueue LocalQueue; set as kueue.x-k8s.io/queue-name on every child."
    )
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Storage the stages share.")
    node_pools: list[NodePool] = Field(default_factory=default_node_pools, description="Named node pools.")
    driver_node_pool: KubeName | None = Field(
        default=None,
        description="Node pool of the CPU programs: the data, rewrite, filter and format stages, the "
        "drivers of generate and evaluate, and the rewrite stand-in. Unset: any node the scheduler picks.",
    )
    images: ImagesSpec = Field(default_factory=ImagesSpec, description="Container images.")
    hub: HubSpec = Field(default_factory=HubSpec, description="Access to the Hugging Face Hub.")
    budget_usd: float | None = Field(
        default=None,
        ge=0,
        le=10_000_000,
        description="Spend (GPU-hours by their pools' prices plus the API's tokens) past which the run is "
        "suspended: its workloads stop, its servers go, and the Ready condition says BudgetExceeded. Raise "
        "it to go on.",
    )
    estimate: EstimateSpec = Field(
        default_factory=EstimateSpec,
        description="Assumptions of the pre-flight cost estimate in status.estimate (made by the data stage "
        "and made again by the format stage from what they measured).",
    )
    sandbox: SandboxSpec = Field(
        default_factory=SandboxSpec,
        description="Where filter and evaluate run model-written code: a container of their pod without the "
        "run's storage.",
    )
    data: DataSpec = Field(default_factory=DataSpec, description="Stage 1: load and mix prompt sets.")
    generation: GenerationSpec = Field(default_factory=GenerationSpec, description="Stage 2: teacher traces.")
    rewrite: RewriteSpec = Field(default_factory=RewriteSpec, description="Stage 3: reformat traces.")
    filter: FilterSpec = Field(default_factory=FilterSpec, description="Stage 4: rejection sampling.")
    format: FormatSpec = Field(default_factory=FormatSpec, description="Stage 5: the SFT dataset.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Stage 6: fine-tune.")
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec, description="Stage 7: benchmarks.")

    def section(self, stage: Stage) -> StageCommon:
        return {
            Stage.DATA: self.data,
            Stage.GENERATE: self.generation,
            Stage.REWRITE: self.rewrite,
            Stage.FILTER: self.filter,
            Stage.FORMAT: self.format,
            Stage.TRAIN: self.training,
            Stage.EVALUATE: self.evaluation,
        }[stage]

    def pool(self, name: str) -> NodePool:
        for pool in self.node_pools:
            if pool.name == name:
                return pool
        raise KeyError(name)

    @model_validator(mode="after")
    def _answers_fit_the_context(self) -> Self:
        """As the CRD's rules say: vLLM refuses a request whose max_tokens exceeds the context it serves,
        and answers one that fits alone with what the prompt leaves (the published evaluation asks 32,768
        of a 32,768-token model); what the prompts need is known only at run time."""
        generation, evaluation = self.generation, self.evaluation
        benchmarks = [(f"benchmarks[{b.name}].sampling", b.sampling) for b in evaluation.benchmarks]
        checks = [
            ("generation.sampling", generation.sampling, "generation.teacher", generation.teacher),
            *(
                (f"evaluation.{where}", sampling, "evaluation.server", evaluation.server)
                for where, sampling in [("sampling", evaluation.sampling), *benchmarks]
                if sampling is not None
            ),
        ]
        for sampling_field, sampling, server_field, server in checks:
            if server.max_model_len is not None and sampling.max_tokens > server.max_model_len:
                raise ValueError(
                    f"{sampling_field}.maxTokens ({sampling.max_tokens}) must not exceed "
                    f"{server_field}.maxModelLen ({server.max_model_len}): vLLM refuses a request for "
                    "more than its context"
                )
        return self

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        pools = {p.name for p in self.node_pools}
        for field, pool in (
            ("generation.teacher.nodePool", self.generation.teacher.node_pool),
            ("training.nodePool", self.training.node_pool),
            ("evaluation.server.nodePool", self.evaluation.server.node_pool),
            ("driverNodePool", self.driver_node_pool),
        ):
            if pool is not None and pool not in pools:
                raise ValueError(f"{field}: no node pool named {pool!r} (have: {', '.join(sorted(pools))})")
        # a stage reads the previous stage's output unless it is given an input path
        needs = {
            Stage.GENERATE: (Stage.DATA, self.generation.input_path),
            Stage.REWRITE: (Stage.GENERATE, self.rewrite.input_path),
            Stage.FILTER: (Stage.REWRITE, self.filter.input_path),
            Stage.FORMAT: (Stage.FILTER, self.format.input_path),
            Stage.TRAIN: (Stage.FORMAT, self.training.input_path),
        }
        for stage, (previous, input_path) in needs.items():
            if self.section(stage).enabled and not self.section(previous).enabled and not input_path:
                raise ValueError(
                    f"{stage.value} is enabled but {previous.value} is disabled: give "
                    f"{wire_section(stage)}.inputPath or enable {previous.value}"
                )
        return self

    @model_validator(mode="after")
    def _can_run_as_written(self) -> Self:
        """As the CRD's rules say: what the cluster or the stages would refuse later."""
        for field, server in (
            ("generation.teacher", self.generation.teacher),
            ("evaluation.server", self.evaluation.server),
        ):
            pool = next((p for p in self.node_pools if p.name == server.node_pool), None)
            if pool is not None and pool.gpus_per_node and pool.gpus_per_node % server.tensor_parallel_size:
                raise ValueError(
                    f"{field}.tensorParallelSize ({server.tensor_parallel_size}) must divide the "
                    f"gpusPerNode ({pool.gpus_per_node}) of its node pool {pool.name!r}"
                )
        training, storage = self.training, self.storage
        one_node_volume = storage.access_mode != "ReadWriteMany" and storage.claim_name is None
        if training.enabled and training.nodes > 1 and one_node_volume:
            raise ValueError(
                f"storage.accessMode must be ReadWriteMany when training.nodes > 1 ({training.nodes}): "
                "a ReadWriteOnce volume mounts on one node only"
            )
        if self.data.enabled and not self.data.sources:
            raise ValueError("data.sources is empty: name at least one source, or disable data")
        restart = self.restart_from
        if restart is not None and not self.section(restart.stage).enabled:
            raise ValueError(
                f"restartFrom.stage is {restart.stage.value}, which is disabled: name an enabled stage"
            )
        evaluation = self.evaluation
        if evaluation.enabled and not evaluation.benchmarks:
            raise ValueError(
                "evaluation.benchmarks is empty: name at least one benchmark, or disable evaluation"
            )
        server = evaluation.server
        if evaluation.enabled and not training.enabled and not server.model and server.endpoint is None:
            raise ValueError(
                "evaluation.server.model is empty (the train stage's model) but training is disabled: name "
                "the model to evaluate"
            )
        return self


def wire_section(stage: Stage) -> str:
    """The spec section a stage reads, as the resource spells it (`generation` for generate)."""
    return {Stage.GENERATE: "generation", Stage.TRAIN: "training", Stage.EVALUATE: "evaluation"}.get(
        stage, stage.value
    )


class RunMetadata(SpecModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)
    name: KubeName = Field(description="Run name.")
    namespace: str = Field(default="default", description="Namespace of the run.")
    uid: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9-]+$",
        description="The run's uid, set by the API server: its outputs' folder (none for a local run).",
    )
    generation: int | None = Field(
        default=None, description="The spec's generation this run file was rendered from (the operator's)."
    )


class ReasoningRun(SpecModel):
    """A whole ReasoningRun manifest (apiVersion, kind, metadata, spec); status is ignored."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)
    api_version: Literal["reasoning.dev/v1alpha1"] = Field(default="reasoning.dev/v1alpha1")
    kind: Literal["ReasoningRun"] = Field(default="ReasoningRun")
    metadata: RunMetadata
    spec: ReasoningRunSpec = Field(default_factory=ReasoningRunSpec)


class SpecError(ValueError):
    """A run file that cannot be read or does not validate; the message names the file and fields."""


def load_run(path: str | Path) -> ReasoningRun:
    path = Path(path)
    try:
        document: Any = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SpecError(f"{path}: cannot read the run file: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise SpecError(
            f"{path}: expected a ReasoningRun manifest (a mapping), got {type(document).__name__}"
        )
    try:
        return ReasoningRun.model_validate(document)
    except ValidationError as error:
        raise SpecError(f"{path}: invalid ReasoningRun:\n{describe_validation_error(error)}") from error


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each starting with the wire (camelCase) path of the field."""
    lines = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"  {location}: {message}")
    return "\n".join(lines)
