"""Config of `make longrange`: why gates matter, measured (experiments/longrange.py).

Run:       make longrange            (SMOKE=1 make longrange: a few steps, same code path)
Expected:  on the adding problem LSTM and GRU reach test MSE < 0.01 up to T = 400 while the
           SimpleRNN stays near the 0.167 baseline from T >= 150 (Le et al. 2015, Fig. 2);
           the gradient of the loss with respect to x_t of an untrained SimpleRNN falls by orders
           of magnitude with the distance from the end, the gated cells' much less; the SimpleRNN
           with a large recurrent init diverges without gradient clipping and trains with it.
"""


def get_config(smoke: bool = False) -> dict:
    config = {
        "seed": 0,
        "cells": ["simple_rnn", "lstm", "gru", "min_gru"],
        "hidden": 64,
        "lengths": [50, 100, 200, 400],
        "adding": {
            "train_examples": 20_000,
            "test_examples": 2_000,
            "batch": 64,
            "epochs": 25,  # 7,825 steps (at 10 epochs, LSTM stayed at the baseline at T = 400)
            "lr": 2e-3,
            "clip_norm": 1.0,  # the usual guard; the exploding case below trains without it
        },
        "copy": {
            "train_examples": 10_000,
            "test_examples": 1_000,
            "num_symbols": 10,  # S symbols to reproduce after a delay of T blanks
            "alphabet_size": 8,
            "batch": 64,
            "epochs": 20,  # 157 steps each: 3,140 steps
            "lr": 2e-3,
            "clip_norm": 1.0,
        },
        "gradients": {"length": 200, "batch": 256},  # dL/dx_t at initialisation
        "exploding": {
            "length": 100,
            "recurrent_scale": 1.05,  # the ReLU SimpleRNN's w_h = 1.05 I: activity grows 1.05^T
            "train_examples": 6_400,  # 100 steps per epoch
            "epochs": 6,
            "lr": 1e-2,  # plain SGD: clipped, it pulls w_h back below 1 within two epochs
            "clip_norm": 1.0,
        },
    }
    if smoke:
        config.update(hidden=8, lengths=[12])
        for task in ("adding", "copy"):
            config[task].update(train_examples=96, test_examples=64, batch=32, epochs=2)
        config["copy"].update(num_symbols=3)
        config["gradients"].update(length=12, batch=8)  # one of the lengths: trained models too
        config["exploding"].update(length=20, train_examples=96, epochs=2)
    return config
