#!/usr/bin/python3
"""The teacher MLP of `make bench` (784-1200-1200-10, ReLU, dropout 0.3,
SGD Nesterov momentum 0.9, weight decay 5e-4, batch 128) trained in PyTorch
on the same machine, so bench/bench.c can print kdbench / PyTorch measured
side by side.  Run by `make bench` through Debian's /usr/bin/python3; prints
one line "torch_peer samples_per_s=N threads=T blas=B" (or "torch_peer skip:
why" and exit status 0 when torch is missing).

Threads: Debian's torch calls the system BLAS (libblas.so.3, the OpenBLAS
pthread build by default) for its GEMMs and runs its element-wise ops on an
OpenMP pool.  Two pools on two cores oversubscribe (issue 12 measured 2.5x
slower).  So:
  * when the OpenMP build of OpenBLAS is there (package libopenblas0-openmp,
    or a folder holding its libopenblas.so.0 named by KD_TORCH_OPENBLAS), the
    script re-runs itself with it preloaded: one OpenMP pool of T threads
    for both GEMMs and element-wise ops (the issue's PyTorch figure);
  * otherwise torch's own pool gets one thread and OpenBLAS's pthread pool T:
    the GEMMs still use every core, nothing oversubscribes.
Usage: torch_peer.py [threads] [samples]   (defaults: all cores, 12800)
"""
import os
import sys
import time

OPENMP_DIRS = ["/usr/lib/x86_64-linux-gnu/openblas-openmp", "/usr/lib/aarch64-linux-gnu/openblas-openmp"]


def openmp_blas():
    dirs = ([os.environ["KD_TORCH_OPENBLAS"]] if os.environ.get("KD_TORCH_OPENBLAS") else []) + OPENMP_DIRS
    for d in dirs:
        for name in ("libblas.so.3", "libopenblas.so.0"):
            p = os.path.join(d, name)
            if os.path.exists(p):
                return p
    return None


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 and int(sys.argv[1]) > 0 else os.cpu_count()
    samples = int(sys.argv[2]) if len(sys.argv) > 2 else 12800
    lib = openmp_blas()
    if lib and os.environ.get("KD_TORCH_PRELOADED") != lib:
        env = dict(os.environ, LD_PRELOAD=lib, KD_TORCH_PRELOADED=lib, OMP_NUM_THREADS=str(threads))
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    if not lib:
        os.environ["OPENBLAS_NUM_THREADS"] = str(threads)  # read when the library loads
    try:
        import torch
    except ImportError as e:
        print("torch_peer skip: no torch module under %s (%s); apt install python3-torch" % (sys.executable, e))
        return 0
    torch.set_num_threads(threads if lib else 1)
    torch.manual_seed(1)
    g = torch.Generator().manual_seed(5)
    x8 = torch.randint(0, 256, (samples, 784), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (samples,), generator=g)
    net = torch.nn.Sequential(
        torch.nn.Linear(784, 1200), torch.nn.ReLU(), torch.nn.Dropout(0.3),
        torch.nn.Linear(1200, 1200), torch.nn.ReLU(), torch.nn.Dropout(0.3),
        torch.nn.Linear(1200, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    lossf = torch.nn.CrossEntropyLoss()
    best = None
    for epoch in range(3):  # the first warms up; the fastest of the others counts
        perm = torch.randperm(samples, generator=g)
        t0 = time.perf_counter()
        for s in range(0, samples, 128):
            idx = perm[s:s + 128]
            xb = (x8[idx].float() / 255.0 - 0.286) / 0.353  # per-batch conversion, as kdbench does
            opt.zero_grad(set_to_none=False)
            loss = lossf(net(xb), y[idx])
            loss.backward()
            opt.step()
        t = time.perf_counter() - t0
        if epoch > 0:
            best = t if best is None or t < best else best
    print("torch_peer samples_per_s=%.0f threads=%d blas=%s torch=%s" %
          (samples / best, threads, "openmp-preloaded" if lib else "pthread,torch-1-thread", torch.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
