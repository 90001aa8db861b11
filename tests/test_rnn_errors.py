"""Bad input to the recurrent layers and cells: one ValueError sentence saying what was expected
and what was given."""
import numpy as np
import pytest

import unrolled

T, B, I, H = 4, 3, 3, 2


def raises(phrase, fn, *args, **kwargs):
    """fn(*args, **kwargs) raises ValueError matching `phrase`, in one sentence."""
    with pytest.raises(ValueError, match=phrase) as excinfo:
        fn(*args, **kwargs)
    message = str(excinfo.value)
    assert message.endswith(".") and ". " not in message, message


@pytest.fixture
def gru():
    return unrolled.GRU(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)


@pytest.fixture
def lstm():
    return unrolled.LSTM(I, H, batch_first=True, dtype=np.float64, seed=0)


def test_bad_x(gru):
    raises(r"x must have 2 or 3 dimensions, but was given shape \(4,\)", gru, np.zeros(T))  # (T, I): unbatched
    raises(r"x must have shape \(any, any, 3\), but was given shape \(4, 3, 5\)", gru, np.zeros((T, B, 5)))
    raises("x must have dtype float64 like the layer's weights, but was given float32",
           gru, np.zeros((T, B, I), np.float32))
    raises(r"at least one step of one sequence, but was given shape \(0, 3, 3\)", gru, np.zeros((0, B, I)))
    raises("must be a NumPy array", gru, _FakeTensor())


class _FakeTensor:
    """Looks like a torch tensor (has .detach) without importing torch."""

    def detach(self):
        return self


def test_bad_initial_states(gru, lstm):
    x = np.zeros((T, B, I))
    raises(r"h0 must have shape \(4, 3, 2\), but was given shape \(2, 3, 2\)", gru, x, np.zeros((2, B, H)))
    raises("h0 must have dtype float64", gru, x, np.zeros((4, B, H), np.float32))
    xb = np.zeros((B, T, I))  # batch_first
    raises(r"c0 must have shape \(1, 3, 2\), but was given shape \(1, 2, 2\)",
           lstm, xb, (np.zeros((1, B, H)), np.zeros((1, 2, H))))
    raises("hx must be a pair", lstm, xb, np.zeros((1, B, H)))


def test_bad_lengths(gru):
    x = np.zeros((T, B, I))
    raises("lengths must be 3 integers", gru, x, lengths=[1, 2])
    raises("lengths must be 3 integers", gru, x, lengths=[1.0, 2.0, 3.0])
    raises(r"lengths must be 3 integers \(one per sequence\), but was given a ragged sequence", gru, x,
           lengths=[1, [2, 3], 3])
    raises(r"lengths must be 1 integer \(one per sequence\), but was given int64 of shape \(1, 2\)",
           unrolled.GRU(I, H, dtype=np.float64), x[:, :1], lengths=[[1, 2]])
    raises(r"lengths must lie in 1\.\.4 \(the padded length\), but range from 0 to 4", gru, x, lengths=[0, 4, 2])
    raises(r"lengths must lie in 1\.\.4 \(the padded length\), but range from 1 to 5", gru, x, lengths=[1, 5, 2])


def test_bad_backward(gru, lstm):
    raises("GRU.backward\\(\\) needs a matching forward\\(\\)", gru.backward, np.zeros((T, B, 2 * H)))
    gru(np.zeros((T, B, I)))
    raises(r"d_out must have shape \(4, 3, 4\), but was given shape \(4, 3, 2\)", gru.backward, np.zeros((T, B, H)))
    gru(np.zeros((T, B, I)))
    raises(r"d_h_n must have shape \(4, 3, 2\), but was given shape \(1, 3, 2\)",
           gru.backward, None, np.zeros((1, B, H)))
    lstm(np.zeros((B, T, I)))
    raises("d_out must have dtype float64", lstm.backward, np.zeros((B, T, H), np.float32))
    lstm(np.zeros((B, T, I)))
    raises(r"d_out must have shape \(3, 4, 2\)", lstm.backward, np.zeros((T, B, H)))  # batch_first
    lstm(np.zeros((B, T, I)))
    raises(r"d_c_n must have 3 dimensions \(with a batch axis\) as the forward's x was batched, but was given "
           r"shape \(3, 2\)", lstm.backward, None, (None, np.zeros((B, H))))
    lstm.eval()
    lstm(np.zeros((B, T, I)))
    raises("no forward pass is waiting", lstm.backward, np.zeros((B, T, H)))


@pytest.mark.parametrize("kwargs,phrase", [
    (dict(hidden_size=0), "hidden_size must be a positive integer, but was given 0"),
    (dict(input_size=2.5), "input_size must be a positive integer, but was given 2.5"),
    (dict(num_layers=0), "num_layers must be a positive integer, but was given 0"),
    (dict(dropout=1.0), r"dropout must be a probability in \[0, 1\), but was given 1.0"),
    (dict(dropout=-0.1), r"dropout must be a probability in \[0, 1\), but was given -0.1"),
    (dict(recurrent_dropout=1.0), r"recurrent_dropout must be a probability in \[0, 1\), but was given 1.0"),
    (dict(nonlinearity="sigmoid"), "nonlinearity must be 'tanh' or 'relu', but was given 'sigmoid'"),
    (dict(dtype=np.int32), "dtype must be float32 or float64, but was given int32"),
    (dict(dtype="foo"), "dtype must be float32 or float64, but was given 'foo'"),
    (dict(dropout=True), r"dropout must be a probability in \[0, 1\), but was given True"),
    (dict(seed="seven"), "seed must be an int, a numpy Generator or None, but was given str"),
])
def test_bad_constructor_arguments(kwargs, phrase):
    args = dict(input_size=I, hidden_size=H)
    args.update(kwargs)
    raises(phrase, unrolled.RNN, **args)


@pytest.mark.parametrize("proj_size", [2, 5, -1, 1.0, True])
def test_bad_proj_size(proj_size):
    raises(r"proj_size must be an integer from 0 \(no projection\) to below hidden_size \(2\), but was given "
           + repr(proj_size), unrolled.LSTM, I, H, proj_size=proj_size)


def test_projected_lstm_states_have_the_projection_size():
    layer = unrolled.LSTM(I, H + 1, proj_size=H, dtype=np.float64)
    x = np.zeros((T, B, I))
    raises(r"h0 must have shape \(1, 3, 2\), but was given shape \(1, 3, 3\)", layer,
           x, (np.zeros((1, B, H + 1)), np.zeros((1, B, H + 1))))
    raises(r"c0 must have shape \(1, 3, 3\), but was given shape \(1, 3, 2\)", layer,
           x, (np.zeros((1, B, H)), np.zeros((1, B, H))))
    layer(x)
    raises(r"d_out must have shape \(4, 3, 2\), but was given shape \(4, 3, 3\)", layer.backward,
           np.zeros((T, B, H + 1)))


def test_bad_init_options():
    raises(r"init must be one of \('pytorch', 'orthogonal', 'glorot'\), but was given 'xavier'",
           unrolled.LSTM(I, H).reset_parameters, "xavier")
    raises("forget_bias needs an LSTM with bias=True", unrolled.GRU(I, H).reset_parameters, forget_bias=1.0)
    raises("forget_bias needs an LSTM with bias=True", unrolled.LSTM(I, H, bias=False).reset_parameters,
           forget_bias=1.0)
    raises("forget_bias needs an LSTM with bias=True", unrolled.RNNCell(I, H).reset_parameters, forget_bias=1.0)


def test_bad_state_dict():
    layer = unrolled.LSTM(I, H, num_layers=2)
    state = layer.state_dict()
    state["weight_hh_l1"] = np.zeros((4 * H, H + 1))
    raises(r"expected 'weight_hh_l1' of shape \(8, 2\), but was given shape \(8, 3\)", layer.load_state_dict, state)


@pytest.mark.parametrize("cell_cls", [unrolled.RNNCell, unrolled.LSTMCell, unrolled.GRUCell])
def test_bad_cell_input(cell_cls):
    cell = cell_cls(I, H, dtype=np.float64)
    state = (lambda h: (h, None)) if cell_cls is unrolled.LSTMCell else (lambda h: h)
    raises(r"x must have 1 or 2 dimensions, but was given shape \(1, 3, 3\)", cell, np.zeros((1, B, I)))
    raises(r"x must have shape \(any, 3\), but was given shape \(3, 2\)", cell, np.zeros((B, 2)))
    raises("x must have dtype float64", cell, np.zeros((B, I), np.float32))
    raises(r"h must have shape \(3, 2\), but was given shape \(2, 2\)", cell, np.zeros((B, I)), state(np.zeros((2, H))))
    raises("needs a matching forward", cell.backward, np.zeros((B, H)))
    cell(np.zeros((B, I)))
    raises(r"dh1 must have shape \(3, 2\), but was given shape \(3, 3\)", cell.backward, np.zeros((B, 3)))


def test_numpy_numbers_are_numbers():
    assert unrolled.GRU(I, H, num_layers=2, dropout=np.float32(0.25)).dropout == 0.25
    assert unrolled.LSTM(I, H, recurrent_dropout=np.float64(0.5)).recurrent_dropout == 0.5


@pytest.mark.parametrize("make", [lambda dtype: unrolled.Linear(3, 2, dtype=dtype),
                                  lambda dtype: unrolled.Embedding(3, 2, dtype=dtype),
                                  lambda dtype: unrolled.LayerNorm(3, dtype=dtype),
                                  lambda dtype: unrolled.MultiheadAttention(4, 2, dtype=dtype),
                                  lambda dtype: unrolled.attention.positions.LearnedPositionalEmbedding(4, dtype=dtype),
                                  lambda dtype: unrolled.GRU(3, 2).to(dtype)])
@pytest.mark.parametrize("dtype", [np.int64, np.float16, "foo"])
def test_every_layer_computes_in_float32_or_float64(make, dtype):
    shown = "'foo'" if dtype == "foo" else np.dtype(dtype).name
    raises(f"dtype must be float32 or float64, but was given {shown}", make, dtype)


def test_dropout_refuses_an_integer_input_it_would_scale():
    raises("Dropout needs a floating-point input, but was given dtype int64", unrolled.Dropout(0.5),
           np.ones((2, 4), dtype=np.int64))
    np.testing.assert_array_equal(unrolled.Dropout(0.5).eval()(np.ones((2, 4), dtype=np.int64)), 1)


@pytest.mark.parametrize("kwargs", [{}, {"bidirectional": True}, {"batch_first": True}])
def test_a_recurrent_output_cannot_be_changed_in_place_before_backward(kwargs):
    layer = unrolled.LSTM(I, H, dtype=np.float64, **kwargs)
    x = np.ones((B, T, I) if kwargs.get("batch_first") else (T, B, I))
    out, (h_n, _) = layer(x)
    with pytest.raises(ValueError, match="read-only"):
        out += 1
    h_n += 1                                                      # the final states are copies
    layer.backward(np.ones_like(out))
    layer.eval()
    out, _ = layer(x)
    out += 1                                                      # nothing kept outside training


@pytest.mark.parametrize("make,name", [(lambda: unrolled.Linear(True, 3), "in_features"),
                                       (lambda: unrolled.Embedding(3, True), "embedding_dim"),
                                       (lambda: unrolled.MultiheadAttention(True, 1), "embed_dim"),
                                       (lambda: unrolled.GRUCell(3, True), "hidden_size")])
def test_a_bool_is_not_a_size(make, name):
    raises(f"{name} must be a positive integer, but was given True", make)
