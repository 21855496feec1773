#!/usr/bin/python3
"""PyTorch -> ONNX fixtures for kdbench's import tests and experiments/onnx_teacher.yaml.

Run with Debian's python3-torch (/usr/bin/python3):
    /usr/bin/python3 scripts/make_onnx_teacher.py OUT_DIR [--teacher-only]

Writes into OUT_DIR, all from fixed seeds (torch.manual_seed), no training:
  mlp.onnx, mlp_dyn.onnx   Flatten -> Linear (Gemm) -> ReLU -> Dropout -> x @ W + b
                           (MatMul + Add) -> ReLU -> Linear; default export (batch 1)
                           and dynamic-axes export (batch "N")
  cnn.onnx, cnn_dyn.onnx   Conv(pad 1) -> BatchNorm -> ReLU -> MaxPool -> Conv(stride 2)
                           -> ReLU -> MaxPool -> x.view(x.size(0), -1) (Shape, Gather,
                           Unsqueeze, Concat, Reshape when dynamic) -> Linear -> ReLU
                           -> Linear -> Softmax (kdbench drops it: logits)
  teacher.onnx             (--teacher, --teacher-only) the CNN trained 2 epochs on
                           Fashion-MNIST's 60,000 training images when the dataset is
                           installed (else untrained): experiments/onnx_teacher.yaml
  x.u8                     1,000 inputs, 784 uint8 pixels each: the first 1,000
                           Fashion-MNIST test images when the dataset is installed,
                           else pseudo-random pixels (seeded)
  mlp.f32, cnn.f32         each model's logits (float32, 1,000 x 10, before any softmax)
                           on ((x/255) - MEAN) / STD
  info.txt                 "mean M std S source fashion-mnist|generated"
"""
import gzip
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

MEAN, STD = 0.2860, 0.3530
FASHION = "/usr/share/datasets/fashion-mnist"


class MatMulAdd(nn.Module):
    """A linear layer written as x @ W + b: exported as MatMul + Add."""

    def __init__(self, k, n):
        super().__init__()
        self.w = nn.Parameter(torch.randn(k, n) / k ** 0.5)
        self.b = nn.Parameter(torch.randn(n) * 0.1)

    def forward(self, x):
        return x @ self.w + self.b


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 48), nn.ReLU(), nn.Dropout(0.2),
                                 MatMulAdd(48, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    def __init__(self, softmax=True, c1=8, c2=12, hidden=32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Linear(c2 * 3 * 3, hidden), nn.ReLU(), nn.Dropout(0.2),
                                  nn.Linear(hidden, 10))
        self.softmax = softmax

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1)
        x = self.head(x)
        return torch.softmax(x, dim=1) if self.softmax else x


def idx_images(path, n):
    with gzip.open(path, "rb") as f:
        data = f.read()
    count, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(data, np.uint8, offset=16).reshape(count, rows * cols)[:n].copy()


def idx_labels(path, n):
    with gzip.open(path, "rb") as f:
        data = f.read()
    return np.frombuffer(data, np.uint8, offset=8)[:n].copy()


def inputs():
    path = os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")
    if os.path.exists(path):
        return idx_images(path, 1000), "fashion-mnist"
    return np.random.RandomState(7).randint(0, 256, (1000, 784)).astype(np.uint8), "generated"


def scaled(x_u8):
    return (torch.from_numpy(x_u8.astype(np.float32)).view(-1, 1, 28, 28) / 255 - MEAN) / STD


def export(model, path, dynamic):
    model.eval()
    x = torch.zeros(1, 1, 28, 28)
    kw = {"input_names": ["pixels"], "output_names": ["out"]}
    if dynamic:
        # the dynamic form also keeps BatchNormalization and Dropout nodes (not folded)
        kw["dynamic_axes"] = {"pixels": {0: "N"}, "out": {0: "N"}}
        kw["training"] = torch.onnx.TrainingMode.PRESERVE
    torch.onnx.export(model, x, path, **kw)


def randomize_bn(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def train_teacher(model):
    """A few hundred steps on Fashion-MNIST's training set, when it is installed."""
    path = os.path.join(FASHION, "train-images-idx3-ubyte.gz")
    if not os.path.exists(path):
        return "untrained"
    x = scaled(idx_images(path, 60000))
    y = torch.from_numpy(idx_labels(os.path.join(FASHION, "train-labels-idx1-ubyte.gz"),
                                    60000).astype(np.int64))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(2):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return "trained 2 epochs on 60,000 images"


def main():
    # the dynamic form keeps BatchNormalization nodes (PRESERVE): the model is in eval mode
    warnings.filterwarnings("ignore", message="It is recommended that constant folding")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    if "--teacher-only" not in sys.argv:
        x_u8, source = inputs()
        x_u8.tofile(os.path.join(out, "x.u8"))
        xs = scaled(x_u8)
        torch.manual_seed(1)
        mlp = MLP().eval()
        torch.manual_seed(2)
        cnn = CNN().eval()
        randomize_bn(cnn, 3)
        for name, model in (("mlp", mlp), ("cnn", cnn)):
            export(model, os.path.join(out, name + ".onnx"), False)
            export(model, os.path.join(out, name + "_dyn.onnx"), True)
        with torch.no_grad():
            mlp(xs).numpy().astype("<f4").tofile(os.path.join(out, "mlp.f32"))
            cnn.softmax = False
            cnn(xs).numpy().astype("<f4").tofile(os.path.join(out, "cnn.f32"))
        with open(os.path.join(out, "info.txt"), "w") as f:
            f.write("mean %.4f std %.4f source %s\n" % (MEAN, STD, source))
    if "--teacher" in sys.argv or "--teacher-only" in sys.argv:
        torch.manual_seed(4)
        teacher = CNN(softmax=False)
        how = train_teacher(teacher)
        export(teacher, os.path.join(out, "teacher.onnx"), True)
        print("teacher.onnx:", how)


if __name__ == "__main__":
    main()
