"""Config of `make ner`: BiLSTM-CRF named-entity taggers (experiments/ner.py).

Run:       make ner                  (SMOKE=1 make ner: a few steps, same code path)
Expected:  CoNLL-2003 English, BiLSTM-CRF with character features and random word embeddings:
           entity F1 >= 86 on the test split (Lample et al. 2016 reach 90.94 with pretrained
           embeddings); the CRF beats a per-token softmax; WNUT-17: entity F1 reported (the
           shared task's best system: 41.9). CoNLL-2003 is read in place and never copied.
"""


def get_config(smoke: bool = False) -> dict:
    model = {
        "embed_dim": 100,  # random word embeddings (no pretrained vectors)
        "units": 100,  # per direction, as Lample et al.
        "cell": "lstm",
        "dropout": 0.5,
        "char_embed_dim": 25,
        "char_units": 25,
    }
    config = {
        "seed": 0,
        "word_len": 20,  # characters kept per word for the character BiLSTM
        "singleton_unk": 0.5,  # train words seen once become <UNK> with this probability
        "datasets": {
            "conll2003": {"epochs": 20, "batch": 32, "lr": 2e-3, "clip_norm": 5.0},
            "wnut17": {"epochs": 30, "batch": 32, "lr": 2e-3, "clip_norm": 5.0},
        },
        "variants": {"crf": {**model, "crf": True}, "softmax": {**model, "crf": False}},
    }
    if smoke:
        config["smoke_sentences"] = 64
        for d in config["datasets"].values():
            d.update(epochs=1, batch=16)
        for v in config["variants"].values():
            v.update(embed_dim=8, units=8, char_embed_dim=4, char_units=4)
    return config
