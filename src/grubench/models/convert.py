"""Weights of the document's `GRUCell` to and from Keras' GRU(reset_after=False) layout.

Keras' GRU with reset_after=False applies the reset gate before the recurrent matmul, as the
document does, but its update gate keeps the old state:

    z_k  = sigmoid(x K_z + h R_z + b_z)
    r    = sigmoid(x K_r + h R_r + b_r)
    h~   = tanh(x K_h + (r * h) R_h + b_h)
    h'   = z_k * h + (1 - z_k) * h~

    kernel [F, 3H] = [K_z | K_r | K_h]   recurrent_kernel [H, 3H] = [R_z | R_r | R_h]   bias [3H]

The document's update gate is z = 1 - z_k = sigmoid(-(x K_z + h R_z + b_z)), so the two cells
are the same function when the update gate's weights and bias change sign:

    W_z = -K_z^T   U_z = -R_z^T   b_z = -b_z(keras)      W_r = K_r^T   U_r = R_r^T   b_r = b_r(keras)
    W_h =  K_h^T   U_h =  R_h^T   b_h =  b_h(keras)

and the blocks are reordered (Keras z, r, h; `GRUCell` r, z, h). Both have 3H(F + H) + 3H
parameters. The arrays are NumPy, in the order Keras' `layer.get_weights()` gives them.
"""

from __future__ import annotations

import numpy as np
import torch

from grubench.models.cells import GRUCell


def to_keras(cell: GRUCell) -> list[np.ndarray]:
    """[kernel [F, 3H], recurrent_kernel [H, 3H], bias [3H]] for Keras' GRU(reset_after=False)."""
    W_r, W_z, W_h = cell.weight_ih.detach().cpu().numpy().copy().reshape(3, cell.hidden_size, -1)
    U_r, U_z, U_h = cell.weight_hh.detach().cpu().numpy().copy().reshape(3, cell.hidden_size, -1)
    b_r, b_z, b_h = cell.bias.detach().cpu().numpy().copy().reshape(3, -1)
    kernel = np.concatenate([-W_z.T, W_r.T, W_h.T], axis=1)
    recurrent_kernel = np.concatenate([-U_z.T, U_r.T, U_h.T], axis=1)
    bias = np.concatenate([-b_z, b_r, b_h])
    return [kernel, recurrent_kernel, bias]


def from_keras(cell: GRUCell, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray) -> GRUCell:
    """Load Keras' GRU(reset_after=False) weights into `cell` (in place; returned for chaining)."""
    F, H = cell.input_size, cell.hidden_size
    kernel, recurrent_kernel, bias = (np.asarray(a) for a in (kernel, recurrent_kernel, bias))
    if kernel.shape != (F, 3 * H) or recurrent_kernel.shape != (H, 3 * H) or bias.shape != (3 * H,):
        raise ValueError(f"expected kernel [{F}, {3 * H}], recurrent_kernel [{H}, {3 * H}], bias [{3 * H}] "
                         f"(reset_after=False), got {kernel.shape}, {recurrent_kernel.shape}, {bias.shape}")
    K_z, K_r, K_h = np.split(kernel, 3, axis=1)
    R_z, R_r, R_h = np.split(recurrent_kernel, 3, axis=1)
    b_z, b_r, b_h = np.split(bias, 3)
    with torch.no_grad():
        for target, blocks in ((cell.weight_ih, (K_r.T, -K_z.T, K_h.T)),
                               (cell.weight_hh, (R_r.T, -R_z.T, R_h.T)),
                               (cell.bias, (b_r, -b_z, b_h))):
            target.copy_(torch.from_numpy(np.concatenate(blocks, axis=0)).to(target.dtype))
    return cell
