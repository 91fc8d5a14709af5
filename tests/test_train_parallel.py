"""Data parallelism: padding rules, and fit on 4 fake CPU devices matching 1 device.

The multi-device run happens in a subprocess, because XLA_FLAGS must be set before JAX starts.
"""

import json
import os
import subprocess
import sys
import textwrap
from typing import NamedTuple

import jax
import numpy as np
import pytest

from seqjax.train import DataParallel, pad_batch


class Batch(NamedTuple):
    inputs: np.ndarray
    mask: np.ndarray
    targets: np.ndarray


def test_pad_batch_pads_with_masked_examples():
    batch = Batch(np.ones((6, 3), np.int32), np.ones((6, 3), bool),
                  (np.ones((6,), np.int32), np.ones((6, 3), np.float32)))
    padded, size = pad_batch(batch, 4)
    assert size == 6
    assert padded.inputs.shape == (8, 3) and padded.targets[1].shape == (8, 3)
    assert padded.mask[:6].all() and not padded.mask[6:].any()
    same, size = pad_batch(batch, 3)
    assert same is batch and size == 6


def test_pad_batch_errors():
    with pytest.raises(ValueError, match="leading batch size"):
        pad_batch(Batch(np.ones((6, 3)), np.ones((5, 3), bool), np.ones(6)), 4)
    with pytest.raises(ValueError, match="no mask"):
        pad_batch({"x": np.ones((6, 3))}, 4)


def test_single_device_is_a_plain_placement():
    dp = DataParallel(jax.devices()[:1])
    batch = Batch(np.ones((5, 3), np.int32), np.ones((5, 3), bool), np.zeros(5, np.int32))
    sharded, size = dp.shard_batch(batch)
    assert size == 5 and sharded.inputs.shape == (5, 3)  # nothing padded on one device


SCRIPT = textwrap.dedent('''
    import json, sys
    from typing import NamedTuple
    import jax, jax.numpy as jnp, numpy as np, optax
    from flax import nnx
    from seqjax.train import fit, softmax_cross_entropy, accuracy

    class Batch(NamedTuple):
        inputs: np.ndarray
        mask: np.ndarray
        targets: np.ndarray

    class Bag(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(20, 8, rngs=rngs)
            self.out = nnx.Linear(8, 2, rngs=rngs)
        def __call__(self, x, mask):
            m = mask.astype(jnp.float32)[..., None]
            return self.out((self.embed(x) * m).sum(1) / jnp.maximum(m.sum(1), 1.0))

    def loss_fn(model, batch, key):
        logits = model(batch.inputs, batch.mask)
        return softmax_cross_entropy(logits, batch.targets, batch.mask), {
            "accuracy": accuracy(logits, batch.targets, batch.mask)}

    def batches(seed, B, n=3, T=6):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            x = rng.integers(0, 20, (B, T)).astype(np.int32)
            mask = np.arange(T)[None, :] < rng.integers(2, T + 1, (B, 1))
            out.append(Batch(x, mask, (x[:, 0] < 10).astype(np.int32)))
        return out

    assert len(jax.devices()) == 4, jax.devices()
    result = {}
    for B in (8, 6):  # 6 does not divide over 4 devices: padded with masked examples
        for name, devices in (("one", jax.devices()[:1]), ("four", jax.devices())):
            h = fit(Bag(nnx.Rngs(0)), loss_fn, optax.adam(3e-2), lambda e: batches(e, B),
                    epochs=3, validation_data=batches(99, B), verbose=0, devices=devices)
            leaf = jax.tree.leaves(h.train_state.params)[0]
            result[f"{name}_{B}"] = {"history": h.history,
                                     "devices": len(leaf.sharding.device_set)}
    json.dump(result, sys.stdout)
''')


def test_fit_on_four_fake_devices_matches_one_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for B in (8, 6):
        one, four = result[f"one_{B}"], result[f"four_{B}"]
        assert one["devices"] == 1 and four["devices"] == 4
        assert set(one["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        for key, values in one["history"].items():
            np.testing.assert_allclose(four["history"][key], values, rtol=2e-5, atol=1e-6,
                                       err_msg=f"B={B} {key}")
        assert one["history"]["loss"][-1] < one["history"]["loss"][0]
