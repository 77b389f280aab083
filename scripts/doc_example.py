"""The document's Keras example in grubench's PyTorch API (claim C7), with its parameter counts.

    python scripts/doc_example.py

The document (a Keras tutorial on the GRU; docs/claims.md) unrolls a GRUCell by hand over
x [2, 80, 100] with 64 units, and stacks two GRU layers, the first returning sequences, to map x
to [2, 64]. This script does both with the document's own cell (`grubench.models.GRUCell`),
checks that the unrolled cell equals the layer, prints each layer's parameter count beside the
Keras numbers in docs/claims.md, and takes weights to Keras' layout and back
(`grubench.models.convert`).
"""

from __future__ import annotations

import torch
from torch import nn

from grubench.models import GRUCell, LSTMCell, Recurrent, convert, counting

torch.manual_seed(0)
x = torch.randn(2, 80, 100)

# -- a GRUCell unrolled by hand over the time axis is the GRU layer ---------------------------
layer = Recurrent(GRUCell, input_size=100, hidden_size=64)
cell = layer.cells[0]
h = torch.zeros(2, 64)
for xt in x.unbind(dim=1):
    out, h = cell(xt, h)
layer_out, layer_h = layer(x)
gap = (out - layer_out[:, -1]).abs().max().item()
print(f"hand-unrolled GRUCell: out {tuple(out.shape)}; layer: out {tuple(layer_out.shape)}, "
      f"h_n {tuple(layer_h.shape)}; largest difference {gap:.1e}")
assert gap < 1e-6, "the unrolled cell and the layer disagree"

# -- two stacked GRU layers, the first returning sequences: [2, 80, 100] -> [2, 64] ------------
first = Recurrent(GRUCell, input_size=100, hidden_size=64)
second = Recurrent(GRUCell, input_size=64, hidden_size=64)
sequences, _ = first(x)                 # return_sequences=True: [2, 80, 64]
net_out = second(sequences)[0][:, -1]   # the last step only: [2, 64]
stack = Recurrent(GRUCell, input_size=100, hidden_size=64, num_layers=2)
stack.cells[0].load_state_dict(first.cells[0].state_dict())
stack.cells[1].load_state_dict(second.cells[0].state_dict())
stack_gap = (stack(x)[0][:, -1] - net_out).abs().max().item()
print(f"2-layer stack: {tuple(x.shape)} -> {tuple(sequences.shape)} -> {tuple(net_out.shape)}; "
      f"Recurrent(num_layers=2) agrees to {stack_gap:.1e}")
assert net_out.shape == (2, 64) and stack_gap < 1e-6

# -- parameters, input 100 and 64 units, beside the Keras numbers in docs/claims.md ------------
def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


rows = [
    ("GRUCell (the document's), layer 1", params(first), "Keras GRU(reset_after=False)", 31_680,
     "same equations, one bias per gate: 3H(F + H) + 3H"),
    ("GRUCell, layer 2 (input 64)", params(second), "(not in docs/claims.md)", None,
     "3H(H + H) + 3H: the second layer reads 64 features, not 100"),
    ("torch nn.GRU", params(nn.GRU(100, 64)), "Keras GRU(reset_after=True)", 31_872,
     "reset after the matmul; an input and a recurrent bias per gate: 3H = 192 more"),
    ("LSTMCell", params(Recurrent(LSTMCell, 100, 64)), "Keras LSTM", 42_240,
     "same equations, one bias per gate: 4H(F + H) + 4H"),
    ("torch nn.LSTM", params(nn.LSTM(100, 64)), "Keras LSTM", 42_240,
     "torch keeps two biases per gate: + 4H = 256 (docs/claims.md: 42,496)"),
    ("torch nn.RNN", params(nn.RNN(100, 64)), "Keras SimpleRNN", 10_560,
     "torch keeps two biases: + H = 64 (docs/claims.md: 10,624)"),
]
print(f"\n{'layer (F = 100, H = 64)':34} {'grubench':>9} {'Keras':>7} {'diff':>5}  Keras layer: why")
for name, ours, keras_name, keras, reason in rows:
    keras_text, diff = (f"{keras:,}", f"{ours - keras:+d}") if keras else ("-", "")
    print(f"{name:34} {ours:>9,} {keras_text:>7} {diff:>5}  {keras_name}: {reason}")

assert params(first) == 31_680 and params(nn.GRU(100, 64)) == 31_872
assert params(nn.LSTM(100, 64)) == 42_496 and params(nn.RNN(100, 64)) == 10_624
assert counting.parameters(counting.structure(first)) == params(first)

# -- Keras weights out and back in: `layer.get_weights()` order, [kernel, recurrent_kernel, bias] --
print("\nKeras layout (what layer.get_weights() gives and layer.set_weights() takes):")
for name, module, reset_after, keras_name in [
    ("GRUCell (the document's)", first, False, "GRU(reset_after=False)"),
    ("torch nn.GRU", nn.GRU(100, 64, batch_first=True), True, "GRU() (reset_after=True)"),
    ("torch nn.LSTM", nn.LSTM(100, 64, batch_first=True), True, "LSTM()"),
    ("torch nn.RNN", nn.RNN(100, 64, batch_first=True), True, "SimpleRNN()"),
]:
    weights = convert.to_keras(module, reset_after=reset_after)
    fresh = convert.from_keras(type(module)(100, 64, batch_first=True) if isinstance(module, nn.RNNBase)
                               else Recurrent(GRUCell, 100, 64), weights, reset_after=reset_after)
    with torch.no_grad():
        trip = (fresh(x)[0] - module(x)[0]).abs().max().item()
    shapes = ", ".join(str(list(w.shape)) for w in weights)
    print(f"  {name:26} -> Keras {keras_name:24} {shapes:30} {sum(w.size for w in weights):>7,} weights; "
          f"back: largest difference {trip:.1e}")
    assert trip < 1e-6
try:
    convert.from_keras(nn.GRU(100, 64, batch_first=True), convert.to_keras(first, reset_after=False),
                       reset_after=False)
except ValueError as refused:
    print(f"  Keras GRU(reset_after=False) into torch's nn.GRU is refused: {refused}")
