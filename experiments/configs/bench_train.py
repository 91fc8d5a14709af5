"""Config of `make bench-train`: the course's IMDB models, seqjax `fit` against Keras 3 on JAX.

Run:       make bench-train            (SMOKE=1 make bench-train: synthetic data, 2 epochs)
Expected:  seqjax's `fit` takes at most half of Keras' wall time for every model (stretch: a
           quarter) with the best validation accuracy within 1 point of Keras', and compiles at
           most 4 programs per `fit`, none after the first epoch; see
           experiments/results/bench_train/README.md for what one run reached.
"""


def get_config(smoke: bool = False) -> dict:
    config = {
        "seed": 0,
        # the course's IMDB setting: top 10,000 words, reviews padded/truncated 'pre'
        "data": "load_imdb_keras",
        "vocab": 10_000,
        "embed": 16,
        "units": 32,
        "batch": 32,  # Keras' default; validation uses it too (validation_batch_size)
        "learning_rate": 1e-3,  # Adam
        "epochs": 10,
        "rounds": 2,  # each model trained twice per framework, alternating who goes first
        "models": ["simple_rnn", "lstm", "gru", "average", "bilstm", "conv1d"],
        "maxlen": {"simple_rnn": 32, "lstm": 32, "gru": 32, "average": 120, "bilstm": 120,
                   "conv1d": 120},
        "goals": {"ratio": 0.5, "stretch_ratio": 0.25, "accuracy_points": 1.0, "compiles": 4},
    }
    if smoke:
        config.update(data="synthetic", epochs=2, rounds=1, train_examples=200,
                      test_examples=100)
    return config
