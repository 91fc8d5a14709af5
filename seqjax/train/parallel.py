"""Data parallelism with ``jax.sharding``: one mesh axis over all devices.

The batch is split along its first axis over the devices and the train state is replicated;
the jitted step then runs SPMD (XLA inserts the gradient all-reduce). On one device every
operation here is a plain ``device_put``, so the same ``fit`` runs unchanged on a laptop CPU,
several GPUs or a TPU v2-8.

Uneven batches: a batch whose size does not divide over the devices is **padded** with examples
whose mask is all False (inputs and targets zero), never truncated; ``fit`` and ``evaluate`` pad
the smaller last batch of an epoch the same way, up to the full batch size, so that it reuses the
compiled step (:mod:`seqjax.train.staging`). Losses and metrics must therefore ignore fully masked
rows; every loss and metric in :mod:`seqjax.train` does when given
the mask (for per-example targets such as ``[B]`` labels they reduce a ``[B, T]`` mask with
:func:`~seqjax.train.losses.example_mask`). Batches without a mask cannot be padded and raise
``ValueError`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["DataParallel", "pad_batch"]


def _batch_fields(batch):
    if hasattr(batch, "_fields") and hasattr(batch, "mask"):
        return batch.mask
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return batch[1]
    return None


def pad_batch(batch, multiple: int):
    """Pads every array of ``batch`` along axis 0 to a multiple of ``multiple``.

    Padding rows are zeros (``False`` in the mask), so they are masked out.

    Args:
        batch: ``(inputs, mask, targets)`` (tuple or NamedTuple; targets may be a tuple of
            arrays) whose arrays share the leading batch size B.
        multiple: the device count.

    Returns:
        ``(padded_batch, B)``.
    """
    leaves, treedef = jax.tree.flatten(batch)
    sizes = {np.shape(x)[0] for x in leaves if np.ndim(x) > 0}
    if len(sizes) != 1:
        raise ValueError(
            f"batch: all arrays must share the leading batch size, got {sorted(sizes)}")
    (size,) = sizes
    pad = (-size) % multiple
    if pad == 0:
        return batch, size
    if _batch_fields(batch) is None:
        raise ValueError(
            f"batch: size {size} does not divide over {multiple} devices and the batch has no "
            "mask to pad it with masked examples; use a batch size divisible by the device count"
        )

    def pad_leaf(x):
        if np.ndim(x) == 0:
            return x
        x = np.asarray(x)
        widths = [(0, pad)] + [(0, 0)] * (x.ndim - 1)
        return np.pad(x, widths)

    return jax.tree.unflatten(treedef, [pad_leaf(x) for x in leaves]), size


class DataParallel:
    """A 1-D device mesh (axis ``"data"``) with batch and replicated shardings.

    Args:
        devices: devices to use (default: ``jax.devices()``, all of them).

    Attributes:
        mesh: the ``jax.sharding.Mesh``.
        batch_sharding: ``NamedSharding(mesh, P("data"))``, first axis split over devices.
        replicated: ``NamedSharding(mesh, P())``.
        num_devices: number of devices.
        num_local_devices: those of this process (all of them unless ``jax.distributed``
            runs several processes; each then feeds its share of every batch).
        multiprocess: whether the mesh spans devices of other processes.
    """

    axis_name = "data"

    def __init__(self, devices: Sequence[jax.Device] | None = None):
        devices = list(jax.devices() if devices is None else devices)
        if not devices:
            raise ValueError("devices must not be empty")
        self.num_devices = len(devices)
        self.num_local_devices = sum(d.process_index == jax.process_index() for d in devices)
        self.multiprocess = self.num_local_devices < self.num_devices
        self.mesh = Mesh(np.asarray(devices), (self.axis_name,))
        self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(self.axis_name))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())

    def replicate(self, tree):
        """Places every array of ``tree`` on all devices."""
        return jax.device_put(tree, self.replicated)

    def shard_batch(self, batch):
        """Pads (see :func:`pad_batch`) and splits a batch over the devices.

        Returns:
            ``(sharded_batch, B)`` with B the size before padding.
        """
        batch, size = pad_batch(batch, self.num_devices)

        def put(x):
            x = jnp.asarray(x) if not isinstance(x, jax.Array) else x
            return jax.device_put(x, self.batch_sharding if x.ndim else self.replicated)

        return jax.tree.map(put, batch), size
