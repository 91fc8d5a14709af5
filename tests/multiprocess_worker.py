"""One process of a ``jax.distributed`` training run, for tests/test_train_multiprocess.py.

Usage: python multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR [CRASH_AT_STEP]

Trains a tiny GRU classifier with ``fit`` (checkpoints in OUT_DIR/checkpoints every 3 steps) and
writes the loss history and the final weights to OUT_DIR/process<P>.npz. With CRASH_AT_STEP, the
process exits (status 3) at the end of that step's chunk, as an interrupted run.
"""

import sys

import jax

process_id, num_processes, port, out = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                        sys.argv[4])
crash_at = int(sys.argv[5]) if len(sys.argv) > 5 else None
jax.config.update("jax_cpu_collectives_implementation", "gloo")
if num_processes > 1:
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               num_processes=num_processes, process_id=process_id)

import pathlib  # noqa: E402

import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import seqjax as sj  # noqa: E402


class Crash(sj.train.Callback):
    def on_train_batch_end(self, step, logs=None):
        if crash_at is not None and step >= crash_at:
            sys.exit(3)


rng = np.random.default_rng(0)
lengths = rng.integers(2, 11, 90)
inputs = [rng.integers(1, 30, n).astype(np.int32) for n in lengths]  # ragged: padded per batch
labels = np.asarray([int(x[0] < 15) for x in inputs], np.int32)
data = sj.data.BatchIterator(inputs, labels, batch_size=16, seed=1)  # 90 = 5 x 16 + 10
validation = sj.data.BatchIterator(inputs[:40], labels[:40], batch_size=12, shuffle=False)
model = sj.models.Classifier(vocab_size=30, embed_dim=8, encoder="gru", units=8,
                             rngs=nnx.Rngs(0))
out_dir = pathlib.Path(out)
history = sj.train.fit(model, sj.models.Classifier.loss_fn, optax.adam(1e-2), data, epochs=3,
                       validation_data=validation, checkpoint_dir=out_dir / "checkpoints",
                       save_every_steps=3, steps_per_execution=2, callbacks=[Crash()],
                       verbose=0).history
weights = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
np.savez(out_dir / f"process{jax.process_index()}.npz", loss=history["loss"],
         val_loss=history["val_loss"], accuracy=history["accuracy"],
         **{f"arr_{i:02d}": w for i, w in enumerate(weights)})
