"""Config of `make charlm`: language models that write (experiments/charlm.py).

Run:       make charlm               (SMOKE=1 make charlm: a few steps, same code path)
Expected:  the character-level LSTM reaches a validation loss <= 1.50 nats per character on Tiny
           Shakespeare (nanoGPT's GPU transformer: 1.47; its CPU configuration: 1.88) and writes
           recognisable play text at temperature 0.5-0.8; the dinosaur-name RNN samples
           plausible names; the word-level model's sampled lines never contain <UNK>.
"""


def get_config(smoke: bool = False) -> dict:
    config = {
        "seed": 0,
        "shakespeare": {
            "val_fraction": 0.1,  # the last 10% of the characters, as char-rnn and nanoGPT
            "embed_dim": 64,
            "units": 512,
            "num_layers": 2,
            "cell": "lstm",
            "dropout": 0.5,  # between the two layers; at 0.25 validation loss rose from epoch 13
            "streams": 64,  # B: the text is cut into 64 contiguous streams, one per batch row
            "seq_len": 128,  # T: truncated BPTT, the carry streamed from chunk to chunk
            "epochs": 40,  # 122 chunks of 64 x 128 characters per epoch: 4,880 steps
            "lr": 2e-3,
            "final_lr": 1e-4,  # cosine decay over the run
            "clip_norm": 1.0,
            "val_window": 256,  # per-epoch validation: windows of 256 characters, zero carry
            "temperatures": [0.5, 0.8, 1.0],
            "sample_len": 600,
            "prompt": "ROMEO:",
        },
        "dinos": {
            "units": 50,  # the course's assignment: a plain RNN of 50 units
            "embed_dim": 27,
            "cell": "simple_rnn",
            "batch": 32,
            "epochs": 40,
            "lr": 1e-2,
            "clip_norm": 5.0,  # the assignment clips gradients to [-5, 5]
            "temperatures": [0.5, 0.8, 1.0],
            "samples": 10,
        },
        "words": {
            "num_words": 10_000,  # <UNK> for the rest; <START> and <EOS> around every line
            "embed_dim": 128,
            "units": 256,
            "num_layers": 2,
            "cell": "lstm",
            "dropout": 0.25,
            "batch": 64,
            "epochs": 15,
            "lr": 2e-3,
            "clip_norm": 1.0,
            "temperature": 0.8,
            "samples": 10,
            "max_len": 30,
        },
    }
    if smoke:
        s = config["shakespeare"]
        s.update(units=16, embed_dim=8, streams=4, seq_len=16, epochs=1, val_window=32,
                 sample_len=20, max_chars=4_000)
        config["dinos"].update(units=8, epochs=1, samples=2, max_names=64)
        config["words"].update(num_words=200, embed_dim=8, units=16, epochs=1, samples=2,
                               max_len=8, max_lines=256)
    return config
