"""Traced programs on disk (`trainer.exported`): a later process loads the program instead of
tracing it and computes the same; any change of key, shapes, JAX settings or sources is a new
program; an unreadable file is replaced, an unwritable store only costs tracing; the
cache's off switch stores nothing."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainer import exported


class Carry(NamedTuple):
    x: jax.Array  # [3]
    count: jax.Array  # [] int32


def step(carry: Carry, scale: jax.Array) -> tuple[Carry, dict]:
    y = jnp.sin(carry.x) * scale
    return Carry(y, carry.count + 1), {"sum": jnp.sum(y)}


ARGS = (Carry(jax.ShapeDtypeStruct((3,), np.float32), jax.ShapeDtypeStruct((), np.int32)),
        jax.ShapeDtypeStruct((), np.float32))


def _files(tmp_path):
    return sorted((tmp_path / "exported").glob("*.bin"))


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SABLE_JAX_CACHE", str(tmp_path))
    return tmp_path


def test_a_stored_program_is_loaded_not_traced_and_computes_the_same(store, monkeypatch):
    first, out = exported.compile_exported(step, ARGS, "step", donate_argnums=(0,))
    assert out[0].x.shape == (3,) and out[1]["sum"].dtype == np.float32
    assert len(_files(store)) == 1

    def no_tracing(*_):
        raise AssertionError("traced again")

    monkeypatch.setattr(exported, "_export", no_tracing)
    second, _ = exported.compile_exported(step, ARGS, "step", donate_argnums=(0,))
    want = step(Carry(jnp.arange(3.0), jnp.int32(4)), jnp.float32(2.0))
    for fn in (first, second):
        got = fn(Carry(jnp.arange(3.0), jnp.int32(4)), jnp.float32(2.0))  # donated: fresh
        assert isinstance(got[0], Carry) and int(got[0].count) == 5
        np.testing.assert_array_equal(got[0].x, want[0].x)
        np.testing.assert_array_equal(got[1]["sum"], want[1]["sum"])


def test_another_key_shape_setting_or_source_is_another_program(store, monkeypatch):
    exported.compile_exported(step, ARGS, "step")
    exported.compile_exported(step, ARGS, "step, another config")
    longer = (Carry(jax.ShapeDtypeStruct((4,), np.float32), ARGS[0].count), ARGS[1])
    exported.compile_exported(step, longer, "step")
    assert len(_files(store)) == 3
    with jax.threefry_partitionable(not jax.config.jax_threefry_partitionable):  # PRNG bits
        exported.compile_exported(step, ARGS, "step")
    assert len(_files(store)) == 4
    monkeypatch.setattr(exported, "source_digest", lambda: "an edited source tree")
    exported.compile_exported(step, ARGS, "step")
    assert len(_files(store)) == 5


def test_an_unreadable_program_is_exported_again(store, caplog):
    exported.compile_exported(step, ARGS, "step")
    (path,) = _files(store)
    path.write_bytes(b"torn")
    fn, _ = exported.compile_exported(step, ARGS, "step")
    assert "unreadable exported program" in caplog.text
    assert int(fn(Carry(jnp.zeros(3), jnp.int32(0)), jnp.float32(1.0))[0].count) == 1
    assert path.read_bytes() != b"torn"


def test_the_cache_switch_turns_the_store_off(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # where the store would be on
    monkeypatch.setenv("SABLE_JAX_CACHE", "off")
    fn, _ = exported.compile_exported(step, ARGS, "step")
    assert int(fn(Carry(jnp.zeros(3), jnp.int32(0)), jnp.float32(1.0))[0].count) == 1
    assert not list(tmp_path.rglob("*.bin"))


def test_a_store_that_cannot_be_written_only_costs_tracing(tmp_path, monkeypatch, caplog):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the store's directory would go")
    monkeypatch.setenv("SABLE_JAX_CACHE", str(blocked))
    fn, _ = exported.compile_exported(step, ARGS, "step")
    assert int(fn(Carry(jnp.zeros(3), jnp.int32(0)), jnp.float32(1.0))[0].count) == 1
    assert "could not store the exported program" in caplog.text
