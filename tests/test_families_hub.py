"""Every family through the hub path (a fake hub on 127.0.0.1 serving one tiny checkpoint per family, one of them
sharded with model.safetensors.index.json), under the disk budget and the parameter limit; an unsupported family
is told which ones are supported; a 7 B checkpoint is refused before its weights are fetched, with the figures."""

from __future__ import annotations

import json
import shutil

import pytest
from families import CASES, build
from test_model_cache import scenario

from engine.convert import FAMILIES

pytestmark = pytest.mark.slow


def test_every_family_loads_from_the_hub(tmp_path):
    repos = {}
    for case in CASES:
        folder = tmp_path / "repos" / case
        build(case, folder, shard="400KB" if case == "qwen2" else None)
        repos[f"tiny/{case}"] = str(folder)
    assert (tmp_path / "repos" / "qwen2" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "repos" / "qwen2").glob("model-*.safetensors"))) > 1
    unsupported = tmp_path / "repos" / "mamba"
    unsupported.mkdir()
    (unsupported / "config.json").write_text(json.dumps({"model_type": "mamba", "hidden_size": 64}))
    shutil.copy(tmp_path / "repos" / "gpt_neox" / "model.safetensors", unsupported)
    repos["tiny/mamba"] = str(unsupported)
    big = tmp_path / "repos" / "qwen2-7b"  # Qwen2-7B's shape, its weights never fetched
    big.mkdir()
    (big / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 32768,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-6}))
    shutil.copy(tmp_path / "repos" / "gpt_neox" / "model.safetensors", big)
    repos["tiny/qwen2-7b"] = str(big)

    seen = scenario("families", repos=repos, cache=str(tmp_path / "cache"), budget_gb=1.0)

    for case in CASES:
        result, family, n_params, files = seen[f"tiny/{case}"]
        assert result == "ok", (case, result)
        assert family == case.removesuffix("_sequential")
        assert n_params > 0 and "config.json" in files and any(f.endswith(".safetensors") for f in files)
    assert sum(f.endswith(".safetensors") for f in seen["tiny/qwen2"][3]) > 1  # every shard fetched
    result, _, _, files = seen["tiny/mamba"]
    assert "'mamba' is not supported" in result
    for model_type, (label, _) in FAMILIES.items():
        assert f"{label} ({model_type})" in result
    assert files == ["config.json"]  # refused on its configuration: no weights fetched
    result, _, _, files = seen["tiny/qwen2-7b"]
    assert "7,070 M parameters" in result and "limit of 1,000 M" in result, result
    assert files == ["config.json"]
