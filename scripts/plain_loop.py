"""The default run, `python -m grubench +model=gru`, as the plain PyTorch script a user would
write instead: the adding problem (T = 50; 10,000 / 1,000 / 1,000 sequences), nn.GRU(2, 128) and
a linear head, Adam (lr 1e-3), gradient norm clipped at 1, batches of 64 in a new order each
epoch, 10 epochs with validation after each, a test pass at the end, one torch thread. Only torch
is imported. The baseline for the harness's whole-process cost:

    /usr/bin/time -f "%e s %U user %S sys %M KiB" python -m grubench +model=gru
    /usr/bin/time -f "%e s %U user %S sys %M KiB" python scripts/plain_loop.py
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F

SEQ_LEN, HIDDEN, BATCH, EPOCHS = 50, 128, 64, 10


def adding(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x [n, T, 2] (a value and a marker per step), y [n]: the sum of the two marked values."""
    values = torch.rand(n, SEQ_LEN, generator=generator)
    first = torch.randint(0, SEQ_LEN // 2, (n,), generator=generator)
    second = torch.randint(SEQ_LEN // 2, SEQ_LEN, (n,), generator=generator)
    markers = torch.zeros(n, SEQ_LEN)
    rows = torch.arange(n)
    markers[rows, first] = markers[rows, second] = 1.0
    return torch.stack([values, markers], dim=-1), values[rows, first] + values[rows, second]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(2, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1]).squeeze(-1)


def mse(net: Net, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return sum(F.mse_loss(net(x[i : i + BATCH]), y[i : i + BATCH], reduction="sum").item()
                   for i in range(0, len(x), BATCH)) / len(x)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    (x, y), (vx, vy), (tx, ty) = adding(10_000, generator), adding(1_000, generator), adding(1_000, generator)
    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    began = time.perf_counter()
    for epoch in range(EPOCHS):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), BATCH):
            batch = order[i : i + BATCH]
            loss = F.mse_loss(net(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
        net.eval()
        print(f"epoch {epoch}: val mse {mse(net, vx, vy):.4f}", flush=True)
    print(f"plain loop: test mse {mse(net, tx, ty):.4f}; {time.perf_counter() - began:.1f} s training")


if __name__ == "__main__":
    main()
