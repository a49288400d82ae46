"""Train LeNet-5 on digits: MNIST from a local folder when given (``--mnist ROOT`` with the IDX files in
ROOT/MNIST/raw; nothing is downloaded), otherwise on digits generated on the fly. Shows the Dataset /
DataLoader / transforms / optimizer / scheduler / checkpoint idioms; ``ember demo`` is the packaged
version.

Run: python examples/train_lenet.py [--mnist ROOT] [--epochs 3] [--workers 2] [--grid digits.png]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import ember
from ember import nn
from ember.utils.data import DataLoader
from ember.vision import datasets, models, transforms, utils


def build_data(args: argparse.Namespace) -> tuple[object, object]:
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.1307], [0.3081])])
    if args.mnist:
        return (
            datasets.MNIST(args.mnist, train=True, transform=tf),
            datasets.MNIST(args.mnist, train=False, transform=tf),
        )
    return (
        datasets.SyntheticDigits(args.train_size, seed=1, transform=tf),
        datasets.SyntheticDigits(2000, seed=2, transform=tf),
    )


@ember.no_grad()
def accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += (model(x).argmax(dim=1) == y).float().sum().cpu().item()
        total += len(y)
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", default=None, help="folder holding MNIST/raw/*-ubyte[.gz]")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--grid", default=None, help="save a PNG grid of the first 64 training images")
    args = parser.parse_args()
    ember.manual_seed(0)
    train_set, test_set = build_data(args)
    train_loader = DataLoader(train_set, batch_size=128, shuffle=True, num_workers=args.workers)
    test_loader = DataLoader(test_set, batch_size=500)
    if args.grid:
        utils.save_image(ember.stack([train_set[i][0] for i in range(64)]), args.grid, normalize=True)

    model = models.lenet5()
    optimizer = ember.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = ember.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        model.train()
        start = time.perf_counter()
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
        scheduler.step()
        acc = accuracy(model, test_loader)
        print(f"epoch {epoch + 1}: last loss {loss.item():.4f}, test accuracy {acc:.4f},"
              f" {time.perf_counter() - start:.1f}s")

    path = os.path.join(tempfile.gettempdir(), "lenet5.ember")
    try:
        ember.save(model.state_dict(), path)
        model.load_state_dict(ember.load(path))
    except (ImportError, AttributeError) as e:  # a build without ember.save / ember.load
        print(f"checkpoint skipped: {e}")
        return
    print(f"checkpoint round trip through {path}: test accuracy {accuracy(model, test_loader):.4f}")


if __name__ == "__main__":
    main()
