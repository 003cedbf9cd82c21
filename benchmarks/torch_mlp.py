#!/usr/bin/env python
"""The D2L dropout MLP in PyTorch, d2l style: the peer regjax is measured against.

784-256-256-10 with ReLU and dropout 0.2/0.5 (``nn.Sequential``), N(0, 0.01²) weights and zero biases,
``CrossEntropyLoss``, ``torch.optim.SGD(lr=0.5)``, batch 256, a ``DataLoader`` over a ``TensorDataset`` with
``shuffle=True`` and a per-step Python loop. ``make_step(..., compile=True)`` is the same step under
``torch.compile``.

Run as a script it is the PyTorch side of the ``startup`` suite's end-to-end job: read the Fashion-MNIST IDX
files from ``--data-dir``, train 10 epochs evaluating test accuracy after each, plot, write results.json. It
imports nothing from regjax or JAX, so its wall time is PyTorch's alone. Differences from d2l's notebook, both in
PyTorch's favour: the images are decoded once into tensors (d2l goes through torchvision's per-item PIL
transform) and metrics are summed on the device and read once per epoch (d2l reads them every step).
"""
from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
         "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def read_idx_uint8(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (raw or .gz) as an array."""
    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    shape = np.frombuffer(data, ">u4", ndim, 4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(data_dir: Path) -> dict:
    """The four IDX files in ``data_dir`` (flat layout, .gz or raw) as tensors: images (N, 1, 28, 28) in [0, 1]."""
    out = {}
    for key, stem in FILES.items():
        path = next(p for p in (data_dir / f"{stem}.gz", data_dir / stem) if p.exists())
        array = read_idx_uint8(path)
        out[key] = (torch.from_numpy(array.astype(np.float32) / 255.0).unsqueeze(1) if key.startswith("x")
                    else torch.from_numpy(array.astype(np.int64)))
    return out


def make_net(num_inputs=784, hidden=(256, 256), num_outputs=10, rates=(0.2, 0.5)) -> nn.Sequential:
    layers, fan_in = [nn.Flatten()], num_inputs
    for width, rate in zip(hidden, rates):
        layers += [nn.Linear(fan_in, width), nn.ReLU(), nn.Dropout(rate)]
        fan_in = width
    net = nn.Sequential(*layers, nn.Linear(fan_in, num_outputs))
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
    return net


def make_step(net, lr=0.5, *, compile=False):
    """``step(X, y) -> (loss sum, correct count)``: forward, mean loss backward, SGD update."""
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    opt = torch.optim.SGD(net.parameters(), lr=lr)

    def step(X, y):
        y_hat = net(X)
        loss = loss_fn(y_hat, y)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        return loss.detach().sum(), (y_hat.argmax(1) == y).sum()

    return torch.compile(step) if compile else step


def loader(x, y, batch_size=256, shuffle=True) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def train_epoch(net, step, data: DataLoader, device) -> dict:
    net.train()
    loss = correct = torch.zeros((), device=device)
    for X, y in data:
        l, c = step(X.to(device), y.to(device))
        loss, correct = loss + l, correct + c
    n = len(data.dataset)
    return {"loss": float(loss) / n, "accuracy": float(correct) / n}


def evaluate_accuracy(net, data: DataLoader, device) -> float:
    net.eval()
    correct = torch.zeros((), device=device)
    with torch.no_grad():
        for X, y in data:
            correct += (net(X.to(device)).argmax(1) == y.to(device)).sum()
    return float(correct) / len(data.dataset)


def plot(history: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, values in history.items():
        ax.plot(range(1, len(values) + 1), values, label=name)
    ax.set_xlabel("epoch")
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="train with the step under torch.compile")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    data = load_fashion_mnist(args.data_dir)
    train_iter = loader(data["x_train"], data["y_train"], args.batch_size, shuffle=True)
    test_iter = loader(data["x_test"], data["y_test"], args.batch_size, shuffle=False)
    net = make_net().to(device)
    step = make_step(net, args.lr, compile=args.compile)
    history = {"train_loss": [], "train_accuracy": [], "test_accuracy": []}
    epoch_times = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        train = train_epoch(net, step, train_iter, device)
        epoch_times.append(time.perf_counter() - t0)
        history["train_loss"].append(train["loss"])
        history["train_accuracy"].append(train["accuracy"])
        history["test_accuracy"].append(evaluate_accuracy(net, test_iter, device))
    args.out.mkdir(parents=True, exist_ok=True)
    plot(history, args.out / "torch_mlp.png")
    (args.out / "results.json").write_text(json.dumps({"history": history, "epoch_time_s": epoch_times,
                                                       "device": device, "threads": torch.get_num_threads()}))
    print(f"final test accuracy {history['test_accuracy'][-1]:.4f}")


if __name__ == "__main__":
    main()
