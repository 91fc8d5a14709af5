"""Config of `make imdb-course`: the course's IMDB experiments (experiments/imdb_course.py).

Run:       make imdb-course          (SMOKE=1 make imdb-course: tiny data, same code path)
Expected:  in the course's setting (top 10,000 words, `pre` padding and truncation to 32 ids,
           Embedding(10000, 16) -> SimpleRNN/LSTM/GRU(32) -> Dense(1), Adam, batch 32) the
           best validation accuracy lies within 1 point of Keras 3's on the same data and
           machine (0.789 SimpleRNN, 0.793 LSTM, 0.791 GRU), reached at epoch 1-3, after which
           validation loss rises while training accuracy climbs past 0.95 (overfitting). The
           subword models (BiLSTM, stacked BiLSTM, Conv1D, pooling) peak at 0.84-0.85 by epoch
           2-3, then reach training accuracy 1.0 while validation falls to 0.79-0.81 by
           epoch 50 (2026-12-04, H200).
"""

# Keras 3.15 on its JAX backend, same data, same machine (issue "The course, reproduced").
KERAS_ANCHOR = {
    "simple_rnn": {"best_val_accuracy": 0.789, "best_epoch": 1, "final_val_accuracy": 0.739},
    "lstm": {"best_val_accuracy": 0.793, "best_epoch": 1, "final_val_accuracy": 0.748},
    "gru": {"best_val_accuracy": 0.791, "best_epoch": 1, "final_val_accuracy": 0.748},
}


def get_config(smoke: bool = False) -> dict:
    config = {
        "seed": 0,
        "rnn_comparison": {
            "num_words": 10_000,
            "maxlen": 32,  # pad_sequences(..., maxlen=32, padding="pre", truncating="pre")
            "embed_dim": 16,
            "units": 32,
            "cells": ["simple_rnn", "lstm", "gru"],
            # False: the course's Keras code (Embedding without mask_zero): the RNN reads the
            # pre-padding too. True: padded steps skipped. The goal is about the course's form.
            "use_mask": [False, True],
            "batch": 32,
            "epochs": 10,
            "lr": 1e-3,  # Keras' Adam default
        },
        "subword_models": {
            # TFDS imdb_reviews/subwords8k's size; the tokenizer is trained on the train texts.
            "vocab_size": 8185,
            # The course pads each batch to its longest review (up to ~3,000 subwords); reviews
            # are cut to their first `maxlen` subwords here to fit the time budget.
            "maxlen": 256,
            "batch": 256,  # the course's BATCH_SIZE for these labs
            "epochs": 50,
            "report_epochs": [10, 50],
            "lr": 1e-3,
            "models": {
                "bilstm": {"embed_dim": 64, "encoder": "lstm", "units": 64,
                           "bidirectional": True, "head": [64]},
                "stacked_bilstm": {"embed_dim": 64, "encoder": "lstm", "units": [64, 32],
                                   "bidirectional": True, "head": [64]},
                "conv1d": {"embed_dim": 64, "encoder": "conv1d", "filters": 128,
                           "kernel_size": 5, "head": [64]},
                "average": {"embed_dim": 64, "encoder": "average", "head": [64]},
            },
        },
        "keras_anchor": KERAS_ANCHOR,
    }
    if smoke:
        rnn = config["rnn_comparison"]
        rnn.update(epochs=2, batch=16, max_examples=64, num_words=200)
        sub = config["subword_models"]
        sub.update(vocab_size=300, maxlen=24, batch=16, epochs=2, report_epochs=[1, 2],
                   max_examples=64)
        for model in sub["models"].values():
            model["embed_dim"] = 8
            if "units" in model:
                model["units"] = 4 if isinstance(model["units"], int) else [4, 4]
            model["head"] = [4]
            if "filters" in model:
                model["filters"] = 4
    return config
