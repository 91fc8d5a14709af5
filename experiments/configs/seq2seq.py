"""Config of `make seq2seq`: encoder-decoders that translate (experiments/seq2seq.py).

Run:       make seq2seq              (SMOKE=1 make seq2seq: a few steps, same code path)
Expected:  dates (human-readable -> ISO): >= 99.5% exact match on 2,000 held-out dates with
           Bahdanau attention, lower without (the context vector alone); 3-digit addition (the
           Keras example: 50k questions, reversed input) >= 99% exact; Tatoeba spa -> eng: BLEU
           (sacrebleu) on 2,000 held-out pairs, beam search >= greedy, attention > none.
"""


def get_config(smoke: bool = False) -> dict:
    config = {
        "seed": 0,
        "dates": {
            "train_examples": 20_000,
            "test_examples": 2_000,
            "batch": 64,
            "epochs": 20,
            "lr": 2e-3,
            "models": {  # the course: a BiLSTM encoder, attention, an LSTM decoder
                "context vector": {"embed_dim": 32, "units": 128, "cell": "lstm",
                                   "attention": None, "bidirectional_encoder": True},
                "Bahdanau attention": {"embed_dim": 32, "units": 64, "cell": "lstm",
                                       "attention": "bahdanau", "bidirectional_encoder": True},
            },
            "attention_examples": 4,
        },
        "addition": {
            "num_examples": 50_000,  # distinct questions, as the Keras example
            "num_digits": 3,
            "test_fraction": 0.1,
            "reverse_input": True,  # "123+45" is read as "54+321" (Sutskever et al. 2014)
            "batch": 64,
            "epochs": 50,
            "lr": 2e-3,
            "final_lr": 1e-4,  # cosine decay: at a constant rate the exact match wobbled 98-99%
            "model": {"embed_dim": 16, "units": 128, "cell": "lstm", "attention": None},
        },
        "tatoeba": {
            "lang": "spa",  # Spanish -> English
            "num_examples": 40_000,  # the shortest pairs, as the TensorFlow NMT tutorial
            "num_words": 8_000,  # per language, reserved ids included
            "test_examples": 2_000,
            "batch": 64,
            "epochs": 12,
            "lr": 2e-3,
            "beam_size": 5,
            "length_penalty": 0.6,
            "max_len": 24,
            "models": {
                "context vector": {"embed_dim": 128, "units": 256, "cell": "gru",
                                   "attention": None},
                "Luong attention": {"embed_dim": 128, "units": 256, "cell": "gru",
                                    "attention": "luong"},
            },
            "show": 8,  # sample translations in the README
        },
    }
    if smoke:
        config["dates"].update(train_examples=128, test_examples=32, epochs=1)
        for m in config["dates"]["models"].values():
            m.update(embed_dim=8, units=8)
        config["addition"].update(num_examples=256, epochs=1)
        config["addition"]["model"].update(embed_dim=8, units=8)
        config["tatoeba"].update(num_examples=600, num_words=300, test_examples=32, epochs=1,
                                 beam_size=2, max_len=8, show=2)
        for m in config["tatoeba"]["models"].values():
            m.update(embed_dim=8, units=8)
    return config
