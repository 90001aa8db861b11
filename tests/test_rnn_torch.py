"""PyTorch parity (float64, random non-zero weights and biases) for RNN, LSTM (also with
proj_size) and GRU.

Over the full grid (kind x num_layers 1..3 x bidirectional x batch_first x lengths x h0): outputs,
final states, dx, dh0 (dc0) and every parameter gradient within 1e-8 relative of torch.nn's, with
a random upstream gradient on out, h_n (and c_n). Lengths go through pack_padded_sequence.
"""
import itertools

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import unrolled

torch.set_num_threads(1)

T, B, I, H = 5, 4, 3, 2
P = 1  # proj_size of "lstm_proj": h and the outputs have P units, c has H
LENGTHS = [3, 5, 1, 4]  # unsorted, one of them full length

KINDS = {
    "rnn_tanh": (unrolled.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (unrolled.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (unrolled.LSTM, torch.nn.LSTM, {}),
    "lstm_proj": (unrolled.LSTM, torch.nn.LSTM, {"proj_size": P}),
    "gru": (unrolled.GRU, torch.nn.GRU, {}),
}


def state_sizes(kind) -> tuple:
    """The size of each state: h (P with a projection, else H) and, for an LSTM, c (H)."""
    if kind == "lstm_proj":
        return P, H
    return (H, H) if kind == "lstm" else (H,)


def assert_close(ours, theirs, what, rtol=1e-8):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    scale = np.abs(theirs).max()  # all zeros (e.g. dead relu units) must then be exactly zero
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * scale, err_msg=what)


def randomize(module, rng, scale=0.7):
    """Random non-zero weights and biases, wider than the default init."""
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape) * scale


def torch_run(module, x, hx, lengths, batch_first, grads):
    """Forward and backward through torch; returns out, states, dx, dh0s and parameter gradients."""
    xt = torch.from_numpy(x).requires_grad_()
    hxt = None
    if hx is not None:
        hxt = tuple(torch.from_numpy(h).requires_grad_() for h in hx)
    packed = xt if lengths is None else pack_padded_sequence(
        xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    out, states = module(packed, None if hxt is None else (hxt if len(hxt) == 2 else hxt[0]))
    if lengths is not None:
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    states = states if isinstance(states, tuple) else (states,)
    loss = (out * torch.from_numpy(grads[0])).sum()
    loss = loss + sum((s * torch.from_numpy(g)).sum() for s, g in zip(states, grads[1]))
    loss.backward()
    d_states = None if hxt is None else tuple(h.grad for h in hxt)
    param_grads = {n: p.grad for n, p in module.named_parameters()}
    return out, states, xt.grad, d_states, param_grads


def ours_run(layer, kind, x, hx, lengths, grads):
    if kind.startswith("lstm"):
        out, states = layer(x, hx, lengths=lengths)
        dx, d_states = layer.backward(grads[0], grads[1])
    else:
        out, h_n = layer(x, None if hx is None else hx[0], lengths=lengths)
        states = (h_n,)
        dx, dh0 = layer.backward(grads[0], grads[1][0])
        d_states = (dh0,)
    return out, states, dx, d_states


def compare(kind, layer, module, batch_first, lengths, with_h0, rng):
    L, D, sizes = layer.num_layers, layer.num_directions, state_sizes(kind)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    hx = tuple(rng.standard_normal((L * D, B, n)) for n in sizes) if with_h0 else None
    out_shape = (B, T, D * sizes[0]) if batch_first else (T, B, D * sizes[0])
    grads = (rng.standard_normal(out_shape), tuple(rng.standard_normal((L * D, B, n)) for n in sizes))

    out, states, dx, d_states = ours_run(layer, kind, x, hx, lengths, grads)
    t_out, t_states, t_dx, t_d_states, t_grads = torch_run(module, x, hx, lengths, batch_first, grads)

    assert_close(out, t_out, "out")
    for i, (s, ts) in enumerate(zip(states, t_states)):
        assert_close(s, ts, f"state {i}")
    assert_close(dx, t_dx, "dx")
    if with_h0:
        for i, (d, td) in enumerate(zip(d_states, t_d_states)):
            assert_close(d, td, f"d state0 {i}")
    assert [n for n, _ in layer.named_parameters()] == list(t_grads)
    for name, p in layer.named_parameters():
        assert_close(p.grad, t_grads[name], name)


GRID = list(itertools.product(KINDS, (1, 2, 3), (False, True), (False, True), (None, LENGTHS), (False, True)))


@pytest.mark.parametrize("kind,num_layers,bidirectional,batch_first,lengths,with_h0", GRID)
def test_matches_torch(kind, num_layers, bidirectional, batch_first, lengths, with_h0):
    rng = np.random.default_rng([num_layers, int(bidirectional), int(batch_first), int(with_h0)])
    ours_cls, torch_cls, extra = KINDS[kind]
    config = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, **extra)
    layer = ours_cls(I, H, dtype=np.float64, seed=0, **config)
    randomize(layer, rng)
    module = torch_cls(I, H, **config).double()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    compare(kind, layer, module, batch_first, lengths, with_h0, rng)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", (True, False))
def test_loads_a_torch_state_dict(kind, bias):
    """The other direction: torch's own weights, loaded as they are."""
    rng = np.random.default_rng(4)
    ours_cls, torch_cls, extra = KINDS[kind]
    config = dict(num_layers=2, bidirectional=True, bias=bias, **extra)
    torch.manual_seed(0)
    module = torch_cls(I, H, **config).double()
    layer = ours_cls(I, H, dtype=np.float64, seed=0, **config)
    layer.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})
    assert list(layer.state_dict()) == list(module.state_dict())
    compare(kind, layer, module, False, LENGTHS, True, rng)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_matches_torch(kind):
    """The float32 path stays float32 and agrees with torch's float32 to single precision."""
    rng = np.random.default_rng(5)
    ours_cls, torch_cls, extra = KINDS[kind]
    layer = ours_cls(I, H, num_layers=2, bidirectional=True, seed=0, **extra)
    module = torch_cls(I, H, num_layers=2, bidirectional=True, **extra)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    out, states = layer(x, lengths=LENGTHS)
    d_out = rng.standard_normal(out.shape).astype(np.float32)
    dx, _ = layer.backward(d_out)
    xt = torch.from_numpy(x).requires_grad_()
    t_out, _ = module(pack_padded_sequence(xt, torch.tensor(LENGTHS), enforce_sorted=False))
    t_out, _ = pad_packed_sequence(t_out, total_length=T)
    (t_out * torch.from_numpy(d_out)).sum().backward()
    assert out.dtype == dx.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in layer.parameters())
    assert_close(out, t_out, "out", rtol=1e-5)
    assert_close(dx, xt.grad, "dx", rtol=1e-5)
    for name, p in module.named_parameters():
        assert_close(dict(layer.named_parameters())[name].grad, p.grad, name, rtol=1e-5)


# ----- recurrent dropout: the state is masked in the recurrent product only -------------------------

WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def weight_names(kind, suffix):
    return [f"{w}{suffix}" for w in WEIGHTS + (("weight_hr",) if kind == "lstm_proj" else ())]


def masked_recurrence(kind, params, x, h0, c0, mask):
    """torch autograd reference, one layer: the recurrent product reads h * mask, the rest reads h."""
    w_ih, w_hh, b_ih, b_hh, *w_hr = params
    h, c, outs = h0, c0, []
    for t in range(x.shape[0]):
        gi, gh = x[t] @ w_ih.T + b_ih, (h * mask) @ w_hh.T + b_hh
        if kind.startswith("lstm"):
            i, f, g, o = (gi + gh).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            if w_hr:
                h = h @ w_hr[0].T
        elif kind == "gru":
            (ir, iz, i_n), (hr, hz, h_n) = gi.chunk(3, dim=1), gh.chunk(3, dim=1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
        else:
            h = torch.tanh(gi + gh) if kind == "rnn_tanh" else torch.relu(gi + gh)
        outs.append(h)
    return torch.stack(outs), h, c


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_dropout_matches_a_torch_reference(kind):
    rng = np.random.default_rng(11)
    cls, _, extra = KINDS[kind]
    layer = cls(I, H, dtype=np.float64, seed=0, recurrent_dropout=0.5, **extra)
    randomize(layer, rng)
    Ph = state_sizes(kind)[0]
    mask = (rng.random((B, Ph)) < 0.5) / 0.5
    layer._recurrent_mask = lambda batch: mask                       # the mask the layer would draw
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((1, B, Ph)), rng.standard_normal((1, B, H))
    d_out, d_h = rng.standard_normal((T, B, Ph)), rng.standard_normal((1, B, Ph))
    if kind.startswith("lstm"):
        out, (h_n, _) = layer(x, (h0, c0))
        dx, (dh0, _) = layer.backward(d_out, (d_h, np.zeros((1, B, H))))
    else:
        out, h_n = layer(x, h0)
        dx, dh0 = layer.backward(d_out, d_h)
    names = weight_names(kind, "_l0")
    params = [torch.tensor(getattr(layer, n).data, requires_grad=True) for n in names]
    xt, h0t = torch.tensor(x, requires_grad=True), torch.tensor(h0[0], requires_grad=True)
    out_t, h_t, _ = masked_recurrence(kind, params, xt, h0t, torch.tensor(c0[0]), torch.tensor(mask))
    ((out_t * torch.tensor(d_out)).sum() + (h_t * torch.tensor(d_h[0])).sum()).backward()
    assert_close(out, out_t, "out")
    assert_close(h_n[0], h_t, "h_n")
    assert_close(dx, xt.grad, "dx")
    assert_close(dh0[0], h0t.grad, "dh0")
    for name, p in zip(names, params):
        assert_close(getattr(layer, name).grad, p.grad, name)
    layer.eval()                                                      # no mask outside training
    del layer._recurrent_mask
    plain = cls(I, H, dtype=np.float64, seed=0, **extra)
    plain.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(layer(x)[0], plain(x)[0])


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_dropout_with_lengths_and_both_directions_matches_the_torch_reference(kind):
    """Each direction draws its own (B, H) mask, whose row j belongs to the j-th longest sequence."""
    rng = np.random.default_rng(12)
    cls, _, extra = KINDS[kind]
    layer = cls(I, H, dtype=np.float64, seed=0, bidirectional=True, recurrent_dropout=0.5, **extra)
    randomize(layer, rng)
    Ph = state_sizes(kind)[0]
    masks = [(rng.random((B, Ph)) < 0.5) / 0.5 for _ in range(2)]
    drawn = iter(masks)
    layer._recurrent_mask = lambda batch: next(drawn)
    order = np.argsort(-np.array(LENGTHS), kind="stable")            # sorted row j is sequence order[j]
    x, d_out = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, 2 * Ph))
    d_h = rng.standard_normal((2, B, Ph))
    if kind.startswith("lstm"):
        out, (h_n, _) = layer(x, lengths=LENGTHS)
        dx, _ = layer.backward(d_out, (d_h, np.zeros((2, B, H))))
    else:
        out, h_n = layer(x, lengths=LENGTHS)
        dx, _ = layer.backward(d_out, d_h)
    names = [weight_names(kind, s) for s in ("_l0", "_l0_reverse")]
    params = [[torch.tensor(getattr(layer, n).data, requires_grad=True) for n in group] for group in names]
    xt = torch.tensor(x, requires_grad=True)
    h_zeros, c_zeros = torch.zeros(1, Ph, dtype=torch.float64), torch.zeros(1, H, dtype=torch.float64)
    outs, finals = torch.zeros(T, B, 2 * Ph, dtype=torch.float64), torch.zeros(2, B, Ph, dtype=torch.float64)
    for b, n in enumerate(LENGTHS):
        row = int(np.flatnonzero(order == b)[0])
        for d in range(2):
            steps = torch.arange(n) if d == 0 else torch.arange(n - 1, -1, -1)
            o, h, _ = masked_recurrence(kind, params[d], xt[steps, b:b + 1], h_zeros, c_zeros,
                                        torch.tensor(masks[d][row:row + 1]))
            outs[steps, b, d * Ph:(d + 1) * Ph] = o[:, 0]
            finals[d, b] = h[0]
    ((outs * torch.tensor(d_out)).sum() + (finals * torch.tensor(d_h)).sum()).backward()
    assert_close(out, outs, "out")
    assert_close(h_n, finals, "h_n")
    assert_close(dx, xt.grad, "dx")
    for group, tensors in zip(names, params):
        for name, p in zip(group, tensors):
            assert_close(getattr(layer, name).grad, p.grad, name)


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_dropout_in_stacked_layers_matches_the_torch_reference(kind):
    """Each layer draws its own mask; the layer above reads the output below, unmasked."""
    rng = np.random.default_rng(13)
    cls, _, extra = KINDS[kind]
    layer = cls(I, H, num_layers=2, dtype=np.float64, seed=0, recurrent_dropout=0.5, **extra)
    randomize(layer, rng)
    Ph = state_sizes(kind)[0]
    masks = [(rng.random((B, Ph)) < 0.5) / 0.5 for _ in range(2)]
    drawn = iter(masks)
    layer._recurrent_mask = lambda batch: next(drawn)
    x, d_out = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, Ph))
    out, _ = layer(x)
    dx, _ = layer.backward(d_out)
    names = [weight_names(kind, f"_l{k}") for k in range(2)]
    params = [[torch.tensor(getattr(layer, n).data, requires_grad=True) for n in group] for group in names]
    xt = torch.tensor(x, requires_grad=True)
    h_zeros, c_zeros = torch.zeros(B, Ph, dtype=torch.float64), torch.zeros(B, H, dtype=torch.float64)
    below, _, _ = masked_recurrence(kind, params[0], xt, h_zeros, c_zeros, torch.tensor(masks[0]))
    out_t, _, _ = masked_recurrence(kind, params[1], below, h_zeros, c_zeros, torch.tensor(masks[1]))
    (out_t * torch.tensor(d_out)).sum().backward()
    assert_close(out, out_t, "out")
    assert_close(dx, xt.grad, "dx")
    for group, tensors in zip(names, params):
        for name, p in zip(group, tensors):
            assert_close(getattr(layer, name).grad, p.grad, name)
