"""seqjax.interop: parity with PyTorch and Keras 3 (outputs, final states, gradients), round trips,
and errors."""

import copy
import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import seqjax as sj  # noqa: E402
from seqjax import interop  # noqa: E402

B, T, I, H = 3, 5, 4, 6
TOL = dict(rtol=1e-5, atol=1e-5)


def close(a, b, what=""):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), err_msg=what, **TOL)


def inputs(seed=0, shape=(B, T, I)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ----------------------------------------------------------------------------- converted form


def is_direction(x):
    return isinstance(x[0], sj.Cell)


def split_converted(converted):
    """(cells, params) with the structure of ``converted``; params alone form a pytree."""
    if is_direction(converted):
        return converted[0], converted[1]
    if isinstance(converted, tuple):
        return (converted[0][0], converted[1][0]), (converted[0][1], converted[1][1])
    pairs = [split_converted(item) for item in converted]
    return [c for c, _ in pairs], [p for _, p in pairs]


def run_seqjax(cells, params, xs, **kwargs):
    """Outputs and final carries as a flat list over (layer, direction), PyTorch's h_n order."""
    if isinstance(cells, sj.Cell):
        carry, ys = sj.rnn(cells, params, xs, **kwargs)
        return ys, [carry]
    if isinstance(cells, tuple):
        carries, ys = sj.bidirectional(cells, params, xs, **kwargs)
        return ys, list(carries)
    carries, ys = sj.stacked(cells, params, xs, **kwargs)
    flat = []
    for carry in carries:
        is_pair = isinstance(carry, tuple) and not hasattr(carry, "_fields")
        flat.extend(carry if is_pair else [carry])
    return ys, flat


def assert_params_equal(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def specs(cells):
    return jax.tree.map(
        lambda c: (c.spec.kind, c.spec.hidden_size, c.spec.activation, c.spec.reset_after),
        cells,
        is_leaf=lambda c: isinstance(c, sj.Cell),
    )


# ----------------------------------------------------------------------------- PyTorch

TORCH_MODES = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
# (num_layers, bidirectional, batch_first, bias, packed): between them every seqjax entry point
# (rnn, bidirectional, stacked), both layouts, bias=False, and packed sequences.
TORCH_CONFIGS = [
    (1, False, True, True, False),
    (1, True, False, True, True),
    (2, False, True, False, True),
    (2, True, False, True, True),
]
# Parity compiles a scan and its gradient per case, so the cases share out the configs; round
# trips are cheap and run every combination.
TORCH_CASES = [(mode, config) for mode in TORCH_MODES for config in TORCH_CONFIGS]
TORCH_PARITY_CASES = [
    (mode, config)
    for mode, config in TORCH_CASES
    if (mode in ("lstm", "gru") and config != TORCH_CONFIGS[0])
    or (mode == "rnn_tanh" and config in (TORCH_CONFIGS[0], TORCH_CONFIGS[3]))
    or (mode == "rnn_relu" and config in (TORCH_CONFIGS[1], TORCH_CONFIGS[2]))
]


def torch_ids(cases):
    return ["{}-L{}-bi{}-bf{}-bias{}-pack{}".format(m, *c) for m, c in cases]


LENGTHS = np.array([5, 2, 4])


def make_torch(mode, num_layers=1, bidirectional=False, batch_first=True, bias=True, seed=0):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    kwargs = dict(
        num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias
    )
    if mode.startswith("rnn"):
        module = torch.nn.RNN(I, H, nonlinearity=mode[4:], **kwargs)
    else:
        module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[mode](I, H, **kwargs)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("bias"):
                # Random non-zero biases: zeros would hide a swapped or dropped bias.
                p.uniform_(-0.5, 0.5)
    return module


def torch_grads_as_converted(module):
    """The module's parameter gradients, in seqjax's converted layout.

    from_torch is linear in the weights, so converting a module holding the gradients gives the
    seqjax gradients; bias_hh is zeroed where seqjax sums b_ih + b_hh (each has the same gradient).
    """
    torch = sys.modules["torch"]
    holder = copy.deepcopy(module)
    with torch.no_grad():
        for (name, p), q in zip(holder.named_parameters(), module.parameters(), strict=True):
            p.copy_(q.grad)
            if name.startswith("bias_hh") and module.mode != "GRU":
                p.zero_()
    return interop.from_torch(holder)


@pytest.mark.parametrize(("mode", "config"), TORCH_PARITY_CASES, ids=torch_ids(TORCH_PARITY_CASES))
def test_torch_parity(mode, config):
    torch = pytest.importorskip("torch")
    num_layers, bidirectional, batch_first, bias, packed = config
    module = make_torch(mode, num_layers, bidirectional, batch_first, bias)
    num_dirs = 2 if bidirectional else 1
    converted = interop.from_torch(module)
    cells, params = split_converted(converted)

    shape = (B, T, I) if batch_first else (T, B, I)
    x = inputs(1, shape)
    rng = np.random.default_rng(2)
    g_ys = rng.normal(size=(*shape[:2], num_dirs * H)).astype(np.float32)
    g_h = rng.normal(size=(num_layers * num_dirs, B, H)).astype(np.float32)
    g_c = rng.normal(size=(num_layers * num_dirs, B, H)).astype(np.float32)

    # PyTorch.
    x_t = torch.tensor(x, requires_grad=True)
    if packed:
        seqs = torch.nn.utils.rnn.pack_padded_sequence(
            x_t, torch.tensor(LENGTHS), batch_first=batch_first, enforce_sorted=False
        )
        out, state = module(seqs)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=batch_first, total_length=T
        )
    else:
        out, state = module(x_t)
    h_n, c_n = state if mode == "lstm" else (state, None)
    loss = (out * torch.tensor(g_ys)).sum() + (h_n * torch.tensor(g_h)).sum()
    if c_n is not None:
        loss = loss + (c_n * torch.tensor(g_c)).sum()
    loss.backward()

    # seqjax: one jit per test, forward and gradients together (eager scans compile per call).
    kwargs = dict(time_major=not batch_first, lengths=jnp.asarray(LENGTHS) if packed else None)

    def loss_fn(params, x):
        ys, carries = run_seqjax(cells, params, x, **kwargs)
        h = jnp.stack([carry.h for carry in carries])
        total = jnp.sum(ys * g_ys) + jnp.sum(h * g_h)
        c = None
        if mode == "lstm":
            c = jnp.stack([carry.c for carry in carries])
            total = total + jnp.sum(c * g_c)
        return total, (ys, h, c)

    grad_fn = jax.jit(jax.grad(loss_fn, argnums=(0, 1), has_aux=True))
    (g_params, g_x), (ys, h, c) = grad_fn(params, jnp.asarray(x))
    close(ys, out.detach().numpy(), "outputs")
    close(h, h_n.detach().numpy(), "h_n")
    if c is not None:
        close(c, c_n.detach().numpy(), "c_n")
    if packed:
        valid = np.arange(T)[None, :] < LENGTHS[:, None]  # [B, T]
        padded = ~(valid if batch_first else valid.T)
        assert not np.asarray(ys)[padded].any()

    close(g_x, x_t.grad.numpy(), "grad wrt inputs")
    _, want = split_converted(torch_grads_as_converted(module))
    if not bias:  # the module has no biases, so only the weights have gradients
        g_params, want = jax.tree.map(
            lambda p: (p.w_x, p.w_h), (g_params, want), is_leaf=lambda p: hasattr(p, "w_x")
        )
    for got, exp in zip(jax.tree.leaves(g_params), jax.tree.leaves(want), strict=True):
        close(got, exp, "grad wrt weights")


@pytest.mark.parametrize(("mode", "config"), TORCH_CASES, ids=torch_ids(TORCH_CASES))
def test_torch_round_trip(mode, config):
    num_layers, bidirectional, batch_first, bias, _ = config
    module = make_torch(mode, num_layers, bidirectional, batch_first, bias, seed=3)
    converted = interop.from_torch(module)
    rebuilt = interop.to_torch(converted, batch_first=batch_first, bias=bias)
    assert type(rebuilt) is type(module)
    for attr in (
        "mode",
        "input_size",
        "hidden_size",
        "num_layers",
        "bidirectional",
        "batch_first",
        "bias",
    ):
        assert getattr(rebuilt, attr) == getattr(module, attr), attr
    again = interop.from_torch(rebuilt)
    assert_params_equal(split_converted(again)[1], split_converted(converted)[1])
    assert specs(split_converted(again)[0]) == specs(split_converted(converted)[0])
    if mode == "gru":  # b_ih and b_hh are kept separately, so even the torch weights come back
        for (name, p), q in zip(module.named_parameters(), rebuilt.parameters(), strict=True):
            np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy(), err_msg=name)


def random_params(cell, input_size, seed):
    """Random params (non-zero biases) built with numpy: cell.init compiles eagerly, slowly."""
    rng = np.random.default_rng(seed)
    spec = cell.spec
    GH = spec.num_gates * spec.hidden_size

    def normal(*shape):
        return jnp.asarray(rng.normal(scale=0.4, size=shape).astype(np.float32))

    w_x, w_h, b = normal(input_size, GH), normal(spec.hidden_size, GH), normal(GH)
    if spec.kind == "gru":
        return sj.GRUParams(w_x, w_h, b, normal(GH) if spec.reset_after else None)
    return {"lstm": sj.LSTMParams, "simple_rnn": sj.RNNParams}[spec.kind](w_x, w_h, b)


def test_torch_from_seqjax_params():
    """to_torch of params made in seqjax runs like seqjax."""
    torch = pytest.importorskip("torch")
    cell = sj.gru(H)
    params = [random_params(cell, I, 0), random_params(cell, H, 1)]
    module = interop.to_torch([(cell, p) for p in params])
    x = inputs(4)
    out, h_n = module(torch.tensor(x))
    carries, ys = jax.jit(lambda p, x: sj.stacked([cell, cell], p, x))(params, jnp.asarray(x))
    close(ys, out.detach().numpy())
    close(jnp.stack([c.h for c in carries]), h_n.detach().numpy())


def test_torch_errors():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"module must be a torch.nn.RNN.*Linear"):
        interop.from_torch(torch.nn.Linear(I, H))
    with pytest.raises(ValueError, match="module must be"):
        interop.from_torch("lstm")
    with pytest.raises(ValueError, match="module must be"):
        interop.from_torch(torch.nn.LSTMCell(I, H))
    with pytest.raises(ValueError, match="proj_size=2"):
        interop.from_torch(torch.nn.LSTM(I, H, proj_size=2))

    with pytest.raises(ValueError, match="reset_after"):
        interop.to_torch((sj.gru(H, reset_after=False), random_params(sj.gru(H, False), I, 0)))
    min_params = sj.MinParams(jnp.zeros((I, 2 * H)), jnp.zeros((2 * H,)))
    with pytest.raises(ValueError, match="min_gru"):
        interop.to_torch((sj.min_gru(H), min_params))
    with pytest.raises(ValueError, match="converted must be"):
        interop.to_torch(torch.nn.LSTM(I, H))
    with pytest.raises(ValueError, match="LSTMParams"):
        interop.to_torch((sj.lstm(H), random_params(sj.gru(H), I, 0)))
    params = random_params(sj.lstm(H), I, 0)
    with pytest.raises(ValueError, match="w_x"):
        interop.to_torch((sj.lstm(2 * H), params))
    with pytest.raises(ValueError, match="bias=False"):
        interop.to_torch((sj.lstm(H), params), bias=False)
    with pytest.raises(ValueError, match="input size"):
        interop.to_torch([(sj.lstm(H), params), (sj.lstm(H), params)])
    with pytest.raises(ValueError, match="one cell kind"):
        interop.to_torch([(sj.lstm(H), params), (sj.gru(H), random_params(sj.gru(H), H, 1))])


# ----------------------------------------------------------------------------- Keras

KERAS_KINDS = ["simple_rnn_tanh", "simple_rnn_relu", "lstm", "gru_after", "gru_before"]
# Row 0 full, row 1 post-padded, row 2 pre-padded with a hole: masked steps keep the state anywhere.
MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 0, 1, 1]], dtype=bool)


@pytest.fixture
def keras_promotion():
    """Keras' jax backend relies on rank and dtype promotion that tests/conftest.py forbids."""
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        yield


def make_keras(kind, bidirectional=False, use_bias=True, seed=0, input_size=I):
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("Keras parity tests need KERAS_BACKEND=jax")
    # Zero initialisers and numpy values: Keras' own initialisers (orthogonal) compile eagerly.
    kw = dict(
        return_sequences=True,
        return_state=True,
        use_bias=use_bias,
        kernel_initializer="zeros",
        recurrent_initializer="zeros",
        bias_initializer="zeros",
    )
    if kind.startswith("simple_rnn"):
        layer = keras.layers.SimpleRNN(H, activation=kind.rsplit("_", 1)[1], **kw)
    elif kind == "lstm":
        layer = keras.layers.LSTM(H, unit_forget_bias=False, **kw)
    else:
        layer = keras.layers.GRU(H, reset_after=kind == "gru_after", **kw)
    if bidirectional:
        layer = keras.layers.Bidirectional(layer)
    else:
        layer.zero_output_for_mask = True  # seqjax emits zeros at masked steps
    layer.build((None, None, input_size))
    rng = np.random.default_rng(seed + 10)
    for variable in layer.trainable_variables:
        if "bias" in variable.path:  # random non-zero biases
            value = rng.uniform(-0.5, 0.5, variable.shape)
        else:
            value = rng.normal(scale=0.4, size=variable.shape)
        variable.assign(value.astype(np.float32))
    return layer


# (kind, bidirectional, use_bias): each case compiles two scans with gradients, so they share
# out the settings.
KERAS_CASES = [
    ("simple_rnn_tanh", False, True),
    ("simple_rnn_relu", True, True),
    ("lstm", False, True),
    ("lstm", True, False),
    ("gru_after", False, True),
    ("gru_after", True, False),
    ("gru_before", True, True),
]
KERAS_IDS = [
    "{}-{}-bias{}".format(kind, "bi" if bi else "uni", use_bias)
    for kind, bi, use_bias in KERAS_CASES
]


@pytest.mark.parametrize(("kind", "bidirectional", "use_bias"), KERAS_CASES, ids=KERAS_IDS)
def test_keras_parity(keras_promotion, kind, bidirectional, use_bias):
    layer = make_keras(kind, bidirectional, use_bias=use_bias)
    converted = interop.from_keras(layer)
    cells, params = split_converted(converted)
    x = jnp.asarray(inputs(5))
    mask = jnp.asarray(MASK)
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    num_states = (2 if kind == "lstm" else 1) * (2 if bidirectional else 1)
    rng = np.random.default_rng(6)
    g_ys = jnp.asarray(rng.normal(size=(B, T, H * (2 if bidirectional else 1))), jnp.float32)
    g_states = jnp.asarray(rng.normal(size=(num_states, B, H)), jnp.float32)

    def keras_forward(trainable, x):
        outputs, _ = layer.stateless_call(trainable, non_trainable, x, mask=mask)
        return outputs[0], jnp.stack(outputs[1:])

    def seqjax_forward(params, x):
        ys, carries = run_seqjax(cells, params, x, mask=mask)
        return ys, jnp.stack([leaf for carry in carries for leaf in carry])  # Keras: h (, c)

    def with_grads(forward):
        def loss(weights, x):
            ys, states = forward(weights, x)
            return jnp.sum(ys * g_ys) + jnp.sum(states * g_states), (ys, states)

        return jax.grad(loss, argnums=(0, 1), has_aux=True)

    @jax.jit  # one compilation for both sides
    def both(trainable, params, x):
        return with_grads(keras_forward)(trainable, x), with_grads(seqjax_forward)(params, x)

    ((gw_k, gx_k), (ys_k, states_k)), ((gw_s, gx_s), (ys_s, states_s)) = both(trainable, params, x)
    close(ys_s, ys_k, "outputs")
    assert not np.asarray(ys_s)[~MASK].any()
    close(states_s, states_k, "final states")
    close(gx_s, gx_k, "grad wrt inputs")
    # from_keras only permutes and reshapes, so converting a layer holding the gradients gives
    # them in seqjax's layout.
    for variable, grad in zip(layer.trainable_variables, gw_k, strict=True):
        variable.assign(grad)
    _, want = split_converted(interop.from_keras(layer))
    if not use_bias:  # the layer has no biases, so only the kernels have gradients
        gw_s, want = jax.tree.map(
            lambda p: (p.w_x, p.w_h), (gw_s, want), is_leaf=lambda p: hasattr(p, "w_x")
        )
    for got, exp in zip(jax.tree.leaves(gw_s), jax.tree.leaves(want), strict=True):
        close(got, exp, "grad wrt weights")


@pytest.mark.parametrize(("kind", "bidirectional"), [("lstm", False), ("gru_after", True)])
def test_keras_no_bias(keras_promotion, kind, bidirectional):
    layer = make_keras(kind, bidirectional, use_bias=False)
    converted = interop.from_keras(layer)
    _, params = split_converted(converted)
    assert all(
        not np.asarray(b).any()
        for p in jax.tree.leaves(params, is_leaf=lambda p: hasattr(p, "w_x"))
        for b in p[2:]
        if b is not None
    )
    # (test_keras_parity runs layers without biases.)
    rebuilt = interop.to_keras(converted, return_sequences=True, return_state=True, use_bias=False)
    assert_params_equal(split_converted(interop.from_keras(rebuilt))[1], params)
    with pytest.raises(ValueError, match="use_bias=False"):
        interop.to_keras(interop.from_keras(make_keras(kind, bidirectional)), use_bias=False)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KERAS_KINDS)
def test_keras_round_trip(keras_promotion, kind, bidirectional):
    layer = make_keras(kind, bidirectional, seed=8)
    converted = interop.from_keras(layer)
    rebuilt = interop.to_keras(converted, return_sequences=True, return_state=True)
    assert type(rebuilt) is type(layer)
    again = interop.from_keras(rebuilt)
    assert_params_equal(split_converted(again)[1], split_converted(converted)[1])
    assert specs(split_converted(again)[0]) == specs(split_converted(converted)[0])
    # Keras' own weights and settings come back too: the rebuilt layer is the same function.
    assert len(layer.weights) == len(rebuilt.weights)
    for a, b in zip(layer.weights, rebuilt.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a.value), np.asarray(b.value), err_msg=a.path)
    pairs = [(layer, rebuilt)]
    if bidirectional:
        assert rebuilt.merge_mode == layer.merge_mode
        pairs = [
            (layer.forward_layer, rebuilt.forward_layer),
            (layer.backward_layer, rebuilt.backward_layer),
        ]
    keys = (
        "units",
        "activation",
        "recurrent_activation",
        "use_bias",
        "reset_after",
        "return_sequences",
        "return_state",
        "go_backwards",
    )
    for a, b in pairs:
        config_a, config_b = a.get_config(), b.get_config()
        assert {k: config_a.get(k) for k in keys} == {k: config_b.get(k) for k in keys}
        assert a.zero_output_for_mask == b.zero_output_for_mask


def test_keras_list_of_layers(keras_promotion):
    keras = pytest.importorskip("keras")
    layers = [
        make_keras("lstm", bidirectional=True, seed=1),
        make_keras("gru_after", seed=2, input_size=2 * H),
    ]
    converted = interop.from_keras(layers)
    assert isinstance(converted, list) and isinstance(converted[0], tuple)
    rebuilt = interop.to_keras(converted, return_sequences=False)
    assert isinstance(rebuilt[0], keras.layers.Bidirectional) and rebuilt[0].return_sequences
    assert not rebuilt[1].return_sequences
    assert_params_equal(
        split_converted(interop.from_keras(rebuilt))[1], split_converted(converted)[1]
    )


def test_keras_errors(keras_promotion):
    keras = pytest.importorskip("keras")
    with pytest.raises(ValueError, match="layer must be.*Dense"):
        interop.from_keras(keras.layers.Dense(H))
    with pytest.raises(ValueError, match="layer must be"):
        interop.from_keras(object())

    def built(layer):
        layer.build((None, None, I))
        return layer

    zeros = dict(kernel_initializer="zeros", recurrent_initializer="zeros")

    with pytest.raises(ValueError, match=r"SimpleRNN 'odd'.*activation='sigmoid'"):
        interop.from_keras(
            built(keras.layers.SimpleRNN(H, activation="sigmoid", name="odd", **zeros))
        )
    with pytest.raises(ValueError, match="activation='relu'"):
        interop.from_keras(built(keras.layers.LSTM(H, activation="relu", **zeros)))
    with pytest.raises(ValueError, match="recurrent_activation='hard_sigmoid'"):
        interop.from_keras(built(keras.layers.GRU(H, recurrent_activation="hard_sigmoid", **zeros)))
    with pytest.raises(ValueError, match=r"forward_layer.*activation='sigmoid'"):
        interop.from_keras(
            built(
                keras.layers.Bidirectional(keras.layers.SimpleRNN(H, activation="sigmoid", **zeros))
            )
        )
    with pytest.raises(ValueError, match="go_backwards"):
        interop.from_keras(built(keras.layers.LSTM(H, go_backwards=True, **zeros)))
    with pytest.raises(ValueError, match="build it first"):
        interop.from_keras(keras.layers.LSTM(H))
    with pytest.raises(ValueError, match="layer must be"):
        interop.from_keras(
            keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.LSTMCell(H)] * 2))
        )
    with pytest.raises(ValueError, match="converted must be"):
        interop.to_keras(keras.layers.LSTM(H))
    min_params = sj.MinParams(jnp.zeros((I, 2 * H)), jnp.zeros((2 * H,)))
    with pytest.raises(ValueError, match="min_lstm"):
        interop.to_keras((sj.min_lstm(H), min_params))


def test_import_does_not_load_torch_or_keras():
    code = (
        "import sys, seqjax; import seqjax.interop; "
        "print([m for m in ('torch', 'keras', 'tensorflow') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
