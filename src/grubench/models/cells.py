"""Recurrent cells written from their equations.

Every cell splits one time step into two parts so that a layer can run it fast:

    project(x)          x [..., F] -> [..., G*H]: every input term W_* x_t (+ biases) of the
                        equations, for all time steps at once (one matmul outside the time loop)
    step(xp_t, state, *weights)
                        the recurrent part of one step, given that step's projection [B, G*H] and
                        `recurrent_weights()`, the recurrent matrices transposed (and split where
                        the equations use parts of them), prepared once per sequence

`cell(x_t, state)` does both for a single step and returns `(h_t, state_t)`, the way the
document's Keras code calls a cell (`out, h = cell(xt, h)`); `state=None` starts from zeros.
A state is h [B, H], or the pair (h, c) for cells with a separate memory cell.

Shapes, for input size F, hidden size H and G gate blocks (the class attribute `blocks`):

    weight_ih [G*H, F]    input weights, one H-row block per gate, in the order the docstring lists
    weight_hh [G*H, H]    recurrent weights, same blocks
    bias      [G*H]       one bias per gate (cells written from equations), or
    bias_ih, bias_hh      two biases per gate (the twins of torch's fused layers, which keep both)

so a cell has G*H*(F + H) + biases*G*H parameters (`biases` is 1 or 2). Cells whose gates read
the input only (`recurrent = False`, the minimal RNNs of `grubench.models.minimal`) have no
weight_hh and G*H*F + biases*G*H parameters. The class attribute
`pointwise` is the number of elementwise operations per unit and step in the equations besides
the bias adds (each add, multiply or nonlinearity counts 1, the x-term + h-term sums included);
`grubench.models.counting` turns these into parameter counts and FLOPs.

Initialisation follows torch's fused layers, U(-1/sqrt(H), 1/sqrt(H)) for every weight and
bias, except where a cell says otherwise (JANET's chrono forget bias). The LSTM cells with a
forget gate take `forget_bias` (None, a number, or "chrono") and `t_max`, as
`grubench.models.init` describes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from grubench.models.init import check_forget_bias, set_gate_biases
from grubench.spec import require_positive

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x [..., F] -> x weight^T + bias [..., N], for weight [N, F].

    As F.linear, but with weight^T made contiguous first: autograd then forms the weight's
    gradient as x^T dY ([F, B*T] [B*T, N]) instead of dY^T x, which on CPU is 10-30 times
    faster for the few input features of these tasks (F = 2 to 10).
    """
    flat = torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight.t().contiguous())
    return flat.view(*x.shape[:-1], weight.shape[0])


class Cell(nn.Module):
    """Base of all cells: weights, the input projection, and the one-step call."""

    blocks: int = 1         # gate blocks G: weight_ih is [G*H, F], weight_hh [G*H, H]
    biases: int = 1         # bias vectors of G*H: 1 (bias) or 2 (bias_ih and bias_hh)
    pointwise: int = 0      # elementwise operations per unit and step (see the module docstring)
    memory: bool = False    # True: the state is (h, c); False: the state is h
    recurrent: bool = True  # False: no weight_hh, the gates read the input only

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        require_positive(input_size=input_size, hidden_size=hidden_size)
        self.input_size = input_size
        self.hidden_size = hidden_size
        G, H = self.blocks, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G * H, input_size))
        if self.recurrent:
            self.weight_hh = nn.Parameter(torch.empty(G * H, H))
        if self.biases == 1:
            self.bias = nn.Parameter(torch.empty(G * H))
        else:
            self.bias_ih = nn.Parameter(torch.empty(G * H))
            self.bias_hh = nn.Parameter(torch.empty(G * H))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., F] -> [..., G*H]: the input terms of every gate, biases included."""
        return affine(x, self.weight_ih, self.bias)

    def recurrent_weights(self) -> tuple[torch.Tensor, ...]:
        """What `step` multiplies the state with: weight_hh transposed, [H, G*H]. A layer takes
        these once per sequence, so that the backward pass sees one transpose or split, not T."""
        return (self.weight_hh.t(),)

    def step(self, xp: torch.Tensor, state: State, *weights: torch.Tensor) -> State:
        """One step from this step's projection xp [B, G*H], the previous state and
        `recurrent_weights()`."""
        raise NotImplementedError

    def initial_state(self, x: torch.Tensor) -> State:
        """Zeros for a batch shaped like x [B, ...]."""
        h = x.new_zeros(x.shape[0], self.hidden_size)
        return (h, h) if self.memory else h

    @staticmethod
    def output(state: State) -> torch.Tensor:
        """The cell's output h_t from its state."""
        return state[0] if isinstance(state, tuple) else state

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One step: x [B, F], state (None: zeros) -> (h_t [B, H], state_t)."""
        if state is None:
            state = self.initial_state(x)
        state = self.step(self.project(x), state, *self.recurrent_weights())
        return self.output(state), state

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


# ---------------------------------------------------------------------------------------------
# The document's GRU and the forget-gate-only network


class GRUCell(Cell):
    """The document's GRU (Chung et al. 2014): reset before the matmul, z = 1 takes the candidate.

        r_t  = sigmoid(W_r x_t + U_r h_{t-1} + b_r)            reset gate
        z_t  = sigmoid(W_z x_t + U_z h_{t-1} + b_z)            update gate
        h~_t = tanh(W_h x_t + U_h (r_t * h_{t-1}) + b_h)       candidate
        h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

    The document writes W_r [h_{t-1}, x_t]; here that matrix is split into its x part (a block
    of weight_ih) and its h part (a block of weight_hh). Blocks in the order r, z, h:

        weight_ih [3H, F] = [W_r; W_z; W_h]    weight_hh [3H, H] = [U_r; U_z; U_h]
        bias [3H] = [b_r; b_z; b_h]

    3H(F + H) + 3H parameters, as Keras' GRU(reset_after=False) (31,680 for F = 100, H = 64).
    Unlike torch's nn.GRU, the reset gate scales h_{t-1} before U_h, and z = 1 takes the
    candidate; `grubench.models.convert` maps these weights to Keras' layout.
    """

    blocks, biases = 3, 1
    pointwise = 3 + 8       # x + h sums; 2 sigmoid, r * h, tanh, (1 - z) h + z h~ (4)

    def recurrent_weights(self):
        H = self.hidden_size
        return self.weight_hh.t().split([2 * H, H], dim=1)  # [U_r; U_z]^T [H, 2H], U_h^T [H, H]

    def step(self, xp, h, U_rz, U_h):
        H = self.hidden_size
        x_rz, x_h = xp.split([2 * H, H], dim=1)
        r, z = torch.sigmoid(torch.addmm(x_rz, h, U_rz)).chunk(2, dim=1)
        candidate = torch.tanh(torch.addmm(x_h, r * h, U_h))
        return (1 - z) * h + z * candidate  # exact at z = 0 and 1; torch.lerp refuses autocast's mixed dtypes


class JANETCell(Cell):
    """JANET, the forget-gate-only LSTM (van der Westhuizen & Lasenby 2018).

        s_t  = W_f x_t + U_f h_{t-1} + b_f
        c~_t = tanh(W_c x_t + U_c h_{t-1} + b_c)
        c_t  = sigmoid(s_t) * c_{t-1} + (1 - sigmoid(s_t - beta)) * c~_t
        h_t  = c_t

    Blocks in the order f, c: weight_ih [2H, F] = [W_f; W_c], weight_hh [2H, H] = [U_f; U_c],
    bias [2H] = [b_f; b_c]; 2H(F + H) + 2H parameters. The state is c_t (= h_t).

    beta = 1 lets a little more input in than a coupled gate 1 - sigmoid(s) would. The forget
    bias gets the chrono initialisation b_f = log(u), u ~ U[1, t_max] (van der Westhuizen &
    Lasenby 2018, after Tallec & Ollivier 2018, who draw from U[1, t_max - 1]), so that unit
    j starts with a memory of about exp(b_f[j]) steps, spread up to the longest dependency
    t_max, typically the task's sequence length; b_c = 0.

    Args:
        t_max: the longest time dependency to expect (>= 2), usually the sequence length.
        beta: the shift of the input gate's pre-activation.
    """

    blocks, biases = 2, 1
    pointwise = 2 + 8       # x + h sums; sigmoid, s - beta, sigmoid, 1 - ., tanh, c update (3)

    def __init__(self, input_size: int, hidden_size: int, t_max: int | None = None, beta: float = 1.0):
        if t_max is None:
            raise ValueError("JANETCell needs t_max, the longest dependency to expect (the sequence length)")
        require_positive(t_max=t_max)
        if t_max < 2:
            raise ValueError(f"t_max must be at least 2, got {t_max!r}")
        self.t_max = t_max
        self.beta = float(beta)
        super().__init__(input_size, hidden_size)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.fill_chrono_biases()

    @torch.no_grad()
    def fill_chrono_biases(self) -> None:
        """b_f = log U[1, t_max] per unit, b_c = 0."""
        H = self.hidden_size
        self.bias[:H].uniform_(1.0, float(self.t_max)).log_()
        self.bias[H:].zero_()

    def step(self, xp, c, U):
        s, pre_c = torch.addmm(xp, c, U).chunk(2, dim=1)
        return torch.sigmoid(s) * c + (1.0 - torch.sigmoid(s - self.beta)) * torch.tanh(pre_c)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, t_max={self.t_max}, beta={self.beta}"


# ---------------------------------------------------------------------------------------------
# LSTM and its gate ablations (Greff et al. 2017), one bias per gate, no peepholes


class ForgetGateCell(Cell):
    """Base of the LSTM cells with a forget gate: the forget-bias option of `grubench.models.init`.

    Args:
        forget_bias: None (U(-1/sqrt(H), 1/sqrt(H)) like every weight), a number b (b_f = b;
            1.0 is Jozefowicz et al. 2015), or "chrono" (b_f = log U[1, t_max - 1], and b_i = -b_f
            where the cell has an input gate; Tallec & Ollivier 2018).
        t_max: the longest dependency for chrono; `Recurrent` passes the task's sequence length.

    A cell with two biases per gate (`TorchLSTMCell`) sets bias_ih and zeroes bias_hh's block.
    """

    gates: str = ""         # the gate of each block, in order, e.g. "ifgo"

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float | str | None = None,
                 t_max: int | None = None):
        self.t_max = t_max
        self.forget_bias = check_forget_bias(forget_bias, t_max, type(self).__name__)
        super().__init__(input_size, hidden_size)

    def gate_block(self, bias: torch.Tensor, gate: str) -> torch.Tensor | None:
        """The H entries of `bias` that belong to `gate` ("i", "f", ...), None if there is no such gate."""
        if gate not in self.gates:
            return None
        k, H = self.gates.index(gate), self.hidden_size
        return bias[k * H:(k + 1) * H]

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.fill_gate_biases(self.forget_bias)

    def fill_gate_biases(self, forget_bias: float | str | None) -> None:
        """`set_gate_biases` on this cell's forget (and, for chrono, input) gate."""
        main = self.bias if self.biases == 1 else self.bias_ih
        zero = ()
        if self.biases == 2:
            gates = ("f", "i") if forget_bias == "chrono" else ("f",)
            zero = tuple(b for b in (self.gate_block(self.bias_hh, g) for g in gates) if b is not None)
        set_gate_biases(self.gate_block(main, "f"), self.gate_block(main, "i"), forget_bias, self.t_max, zero)

    def extra_repr(self) -> str:
        extra = "" if self.forget_bias is None else f", forget_bias={self.forget_bias!r}"
        return super().extra_repr() + extra


class LSTMCell(ForgetGateCell):
    """LSTM from its equations, the reference for the ablations below.

        i_t  = sigmoid(W_i x_t + U_i h_{t-1} + b_i)      input gate
        f_t  = sigmoid(W_f x_t + U_f h_{t-1} + b_f)      forget gate
        g_t  = tanh(W_g x_t + U_g h_{t-1} + b_g)         cell input
        o_t  = sigmoid(W_o x_t + U_o h_{t-1} + b_o)      output gate
        c_t  = f_t * c_{t-1} + i_t * g_t
        h_t  = o_t * tanh(c_t)

    Blocks i, f, g, o: weight_ih [4H, F], weight_hh [4H, H], bias [4H]; 4H(F + H) + 4H
    parameters, as Keras' LSTM (42,240 for F = 100, H = 64). State (h, c). `forget_bias` and
    `t_max` as `ForgetGateCell` (so also NIG, NOG and `TorchLSTMCell`).
    """

    blocks, biases, memory = 4, 1, True
    gates = "ifgo"
    pointwise = 4 + 9       # x + h sums; 3 sigmoid, tanh g, c update (3), tanh c, o *

    def step(self, xp, state, U):
        h, c = state
        i, f, g, o = torch.addmm(xp, h, U).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class LSTMNoForgetCell(Cell):
    """LSTM without a forget gate (f_t = 1, Greff et al.'s NFG):

        i_t = sigmoid(W_i x_t + U_i h_{t-1} + b_i)     g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)
        o_t = sigmoid(W_o x_t + U_o h_{t-1} + b_o)
        c_t = c_{t-1} + i_t * g_t                        h_t = o_t * tanh(c_t)

    Blocks i, g, o: weight_ih [3H, F], weight_hh [3H, H], bias [3H]; 3H(F + H) + 3H parameters.
    """

    blocks, biases, memory = 3, 1, True
    pointwise = 3 + 7       # x + h sums; 2 sigmoid, tanh g, c update (2), tanh c, o *

    def step(self, xp, state, U):
        h, c = state
        i, g, o = torch.addmm(xp, h, U).chunk(3, dim=1)
        c = c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class LSTMNoInputCell(ForgetGateCell):
    """LSTM without an input gate (i_t = 1, Greff et al.'s NIG):

        f_t = sigmoid(W_f x_t + U_f h_{t-1} + b_f)     g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)
        o_t = sigmoid(W_o x_t + U_o h_{t-1} + b_o)
        c_t = f_t * c_{t-1} + g_t                        h_t = o_t * tanh(c_t)

    Blocks f, g, o: weight_ih [3H, F], weight_hh [3H, H], bias [3H]; 3H(F + H) + 3H parameters.
    """

    blocks, biases, memory = 3, 1, True
    gates = "fgo"
    pointwise = 3 + 7       # x + h sums; 2 sigmoid, tanh g, c update (2), tanh c, o *

    def step(self, xp, state, U):
        h, c = state
        f, g, o = torch.addmm(xp, h, U).chunk(3, dim=1)
        c = torch.sigmoid(f) * c + torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class LSTMNoOutputCell(ForgetGateCell):
    """LSTM without an output gate (o_t = 1, Greff et al.'s NOG):

        i_t = sigmoid(W_i x_t + U_i h_{t-1} + b_i)     f_t = sigmoid(W_f x_t + U_f h_{t-1} + b_f)
        g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)
        c_t = f_t * c_{t-1} + i_t * g_t                  h_t = tanh(c_t)

    Blocks i, f, g: weight_ih [3H, F], weight_hh [3H, H], bias [3H]; 3H(F + H) + 3H parameters.
    """

    blocks, biases, memory = 3, 1, True
    gates = "ifg"
    pointwise = 3 + 7       # x + h sums; 2 sigmoid, tanh g, c update (3), tanh c

    def step(self, xp, state, U):
        h, c = state
        i, f, g = torch.addmm(xp, h, U).chunk(3, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.tanh(c), c


class LSTMCoupledCell(Cell):
    """LSTM with coupled input and forget gates (f_t = 1 - i_t, Greff et al.'s CIFG):

        i_t = sigmoid(W_i x_t + U_i h_{t-1} + b_i)     g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)
        o_t = sigmoid(W_o x_t + U_o h_{t-1} + b_o)
        c_t = (1 - i_t) * c_{t-1} + i_t * g_t            h_t = o_t * tanh(c_t)

    Blocks i, g, o: weight_ih [3H, F], weight_hh [3H, H], bias [3H]; 3H(F + H) + 3H parameters.
    """

    blocks, biases, memory = 3, 1, True
    pointwise = 3 + 9       # x + h sums; 2 sigmoid, 1 - i, tanh g, c update (3), tanh c, o *

    def step(self, xp, state, U):
        h, c = state
        i, g, o = torch.addmm(xp, h, U).chunk(3, dim=1)
        i = torch.sigmoid(i)
        c = (1 - i) * c + i * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


# ---------------------------------------------------------------------------------------------
# Cell-loop twins of torch's fused layers: same equations, same weight layout, two biases


class TorchRNNCell(Cell):
    """torch.nn.RNN's step (tanh):

        h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

    weight_ih [H, F], weight_hh [H, H], bias_ih [H], bias_hh [H]: H(F + H) + 2H parameters
    (Keras' SimpleRNN keeps one bias: H(F + H) + H).
    """

    blocks, biases = 1, 2
    pointwise = 1 + 1       # x + h sum; tanh

    def project(self, x):
        return affine(x, self.weight_ih, self.bias_ih + self.bias_hh)

    def step(self, xp, h, U):
        return torch.tanh(torch.addmm(xp, h, U))


class TorchGRUCell(Cell):
    """torch.nn.GRU's step: the reset gate after the recurrent matmul, z = 1 keeps h_{t-1}.

        r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    Blocks r, z, n: weight_ih [3H, F], weight_hh [3H, H], bias_ih [3H], bias_hh [3H];
    3H(F + H) + 6H parameters (31,872 for F = 100, H = 64).
    """

    blocks, biases = 3, 2
    pointwise = 3 + 8       # x + h sums; 2 sigmoid, r * (.), tanh, (1 - z) n + z h (4)

    def project(self, x):
        return affine(x, self.weight_ih, self.bias_ih)

    def recurrent_weights(self):
        return self.weight_hh.t(), self.bias_hh

    def step(self, xp, h, U, b_hh):
        H = self.hidden_size
        x_rz, x_n = xp.split([2 * H, H], dim=1)
        h_rz, h_n = torch.addmm(b_hh, h, U).split([2 * H, H], dim=1)
        r, z = torch.sigmoid(x_rz + h_rz).chunk(2, dim=1)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h


class TorchLSTMCell(ForgetGateCell):
    """torch.nn.LSTM's step:

        i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
        f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    Blocks i, f, g, o: weight_ih [4H, F], weight_hh [4H, H], bias_ih [4H], bias_hh [4H];
    4H(F + H) + 8H parameters (42,496 for F = 100, H = 64). State (h, c).
    """

    blocks, biases, memory = 4, 2, True
    gates = "ifgo"
    pointwise = 4 + 9       # x + h sums; 3 sigmoid, tanh g, c update (3), tanh c, o *

    def project(self, x):
        return affine(x, self.weight_ih, self.bias_ih + self.bias_hh)

    def step(self, xp, state, U):
        h, c = state
        i, f, g, o = torch.addmm(xp, h, U).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
