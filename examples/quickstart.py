"""Quickstart: ``import ember as torch`` and the usual PyTorch training loop, on a tiny regression.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import ember as torch
from ember import nn
from ember.utils.data import DataLoader, TensorDataset


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(512, 3)
    true_w = torch.tensor([[2.0], [-1.0], [0.5]])
    y = x @ true_w + 0.3 + 0.05 * torch.randn(512, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)

    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    loss_fn = nn.MSELoss()
    for epoch in range(30):
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(yb)
        scheduler.step()
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1:2d}  mse {total / len(x):.4f}  lr {scheduler.get_last_lr()[0]:.4f}")
    print(model)


if __name__ == "__main__":
    main()
